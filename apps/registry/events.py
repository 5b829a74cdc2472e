"""What the registry tells other apps, as Django signals: a version was created from an upload.

The registry doesn't know what processes a version. The pipeline (apps.pipeline) subscribes in
its AppConfig.ready() and starts the version's run, so the registry never imports the
pipeline and the pipeline may import the registry freely. Receivers run inside the
transaction that creates the version: an exception they raise rolls the version back with
them (and the upload's new blobs are removed), as a direct call would.
"""

from __future__ import annotations

from django.dispatch import Signal

# sender: the ModelVersion class; kwargs: version (saved, with its artifacts and profiles), user.
version_created = Signal()
