"""Domain errors, one class per stable API `code`; the docstring is the default detail."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Something went wrong."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"
    title: ClassVar[str] = "Bad request"
    headers: dict[str, str]

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        self.extra = extra
        self.headers = {}
        super().__init__(self.detail)

    # Problems that are stored as an idempotent result (a retry sees them again).
    replayable: ClassVar[bool] = True


class InvalidRequest(DomainError):
    """The request is malformed."""

    replayable = False


class Unauthorized(DomainError):
    """A valid API key is required."""

    status, code, title = 401, "unauthorized", "Unauthorized"
    replayable = False

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = "Bearer"  # RFC 9110: a 401 names its scheme


class Forbidden(DomainError):
    """This API key lacks the scope this action needs."""

    status, code, title = 403, "forbidden", "Forbidden"
    replayable = False


class PersonBlocked(DomainError):
    """This person may not book until the block ends."""

    status, code, title = 403, "person_blocked", "Person blocked"

    def __init__(self, blocked_until: str) -> None:
        super().__init__(blocked_until=blocked_until)


class NotFound(DomainError):
    """No such resource."""

    status, code, title = 404, "not_found", "Not found"


class SlotFull(DomainError):
    """The window has fewer seats left than the party needs."""

    status, code, title = 409, "slot_full", "Window full"


class ActiveBookingExists(DomainError):
    """This person already holds a booking for this service."""

    status, code, title = 409, "active_booking_exists", "Active booking exists"

    def __init__(self, booking_id: str | None) -> None:
        super().__init__(booking_id=booking_id)


class DailyLimitReached(DomainError):
    """This person already made the allowed number of bookings today."""

    status, code, title = 409, "daily_limit_reached", "Daily limit reached"


class PhoneBoundToOtherPerson(DomainError):
    """This phone number belongs to another identity."""

    status, code, title = 409, "phone_bound_to_other_person", "Phone bound to another person"


class CancelCutoffPassed(DomainError):
    """The deadline for a person's cancellation has passed."""

    status, code, title = 409, "cancel_cutoff_passed", "Cancel cutoff passed"

    def __init__(self, cancel_deadline: str) -> None:
        super().__init__(cancel_deadline=cancel_deadline)


class InvalidState(DomainError):
    """The booking's status does not allow this action."""

    status, code, title = 409, "invalid_state", "Invalid state"


class IdempotencyInProgress(DomainError):
    """A request with the same Idempotency-Key is still running."""

    status, code, title = 409, "idempotency_in_progress", "Idempotent request in progress"
    replayable = False

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__()
        # The seconds left on the running request's lease: then it has answered, or its claim
        # may be taken over.
        self.headers["Retry-After"] = str(max(1, retry_after))


class IdempotencyKeyReused(DomainError):
    """This Idempotency-Key was used with a different request."""

    status, code, title = 422, "idempotency_key_reused", "Idempotency-Key reused"
    replayable = False


class NotBookable(DomainError):
    """This window cannot be booked."""

    status, code, title = 422, "not_bookable", "Not bookable"


class RateLimited(DomainError):
    """Too many requests; retry later."""

    status, code, title = 429, "rate_limited", "Too many requests"
    replayable = False

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.headers["Retry-After"] = str(max(1, retry_after))


class Unavailable(DomainError):
    """The durable store cannot be reached; nothing was booked."""

    status, code, title = 503, "unavailable", "Service unavailable"
    replayable = False

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = "2"
