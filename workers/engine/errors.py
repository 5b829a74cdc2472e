"""Errors the engine raises about a user's model file."""


class ModelError(Exception):
    """A problem with the user's model file, told as a sentence the user can act on.

    `code` is a stable identifier for the platform and the API (for example
    "truncated" or "unsafe_archive"); `message` is shown to the user as is.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ModelError({self.code!r}, {self.message!r})"
