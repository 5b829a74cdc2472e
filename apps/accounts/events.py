"""What accounts tells other apps, as Django signals: a team's four-eyes rule changed.

Accounts doesn't know who applies the rule. Approvals subscribes in its AppConfig.ready():
turning the rule on brings the team's versions under it, turning it off leaves undecided
versions under the rule they were uploaded with, and approvals records which. Receivers run
inside the transaction that saved the team, so the team's change and its consequences commit
or roll back together.
"""

from __future__ import annotations

from django.dispatch import Signal

# sender: the Team class; kwargs: team (saved), actor (the user), enabled (the new value).
four_eyes_changed = Signal()
