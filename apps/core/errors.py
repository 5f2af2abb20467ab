"""Domain errors raised by services; views and the API turn them into messages."""


class RuleViolation(Exception):
    """A business rule refused the operation; the message says which and what to do."""
