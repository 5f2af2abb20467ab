"""Domain errors raised by services; views and the API turn them into messages."""


class RuleViolation(Exception):
    """A business rule refused the operation; the message says which and what to do."""


class Forbidden(RuleViolation):
    """The actor may see the object but their role does not allow this operation (HTTP 403).

    Defined here so that framework code (``apps.core.api``) can answer it without
    importing the domain app that raises it (``apps.rbac.access.PermissionDenied``).
    """
