"""One exception root for problems a person caused and can fix; its text is safe to show them.

Anything else that goes wrong is an internal error: logged in full, shown as a short apology.
"""


class UserError(Exception):
    """Bad input or a refused action. `str(exc)` is shown to the person verbatim."""


class FieldError(UserError):
    """One form field's value is wrong (`field` names it): a form shows the message next to it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PermissionDenied(UserError):
    """The person's role does not allow the action."""


class NotFound(UserError):
    """The thing the person named does not exist (or is not theirs to see)."""
