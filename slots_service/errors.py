"""Domain errors, one class per stable API `code`; the docstring is the default detail.

An error carries its `code`, a `detail` and the extra members a caller may read (`booking_id`,
`blocked_until`, ...), nothing of HTTP: `problems.py` maps each class to a status, a title and
headers in one table.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Something went wrong."""

    code: ClassVar[str] = "invalid_request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or (self.__doc__ or self.code).strip()
        self.extra = extra
        super().__init__(self.detail)

    @classmethod
    def restore(cls, detail: str, extra: dict[str, Any]) -> DomainError:
        """The error as it was raised before (an idempotent refusal replayed)."""
        error = cls.__new__(cls)
        DomainError.__init__(error, detail, **extra)
        return error


class InvalidRequest(DomainError):
    """The request is malformed."""


class Unauthorized(DomainError):
    """A valid API key is required."""

    code = "unauthorized"


class Forbidden(DomainError):
    """This API key lacks the scope this action needs."""

    code = "forbidden"


class PersonBlocked(DomainError):
    """This person may not book until the block ends."""

    code = "person_blocked"

    def __init__(self, blocked_until: str) -> None:
        super().__init__(blocked_until=blocked_until)


class NotFound(DomainError):
    """No such resource."""

    code = "not_found"


class SlotFull(DomainError):
    """The window has fewer seats left than the party needs."""

    code = "slot_full"


class ActiveBookingExists(DomainError):
    """This person already holds a booking for this service."""

    code = "active_booking_exists"

    def __init__(self, booking_id: str | None) -> None:
        super().__init__(booking_id=booking_id)


class DailyLimitReached(DomainError):
    """This person already made the allowed number of bookings today."""

    code = "daily_limit_reached"


class PhoneBoundToOtherPerson(DomainError):
    """This phone number belongs to another identity."""

    code = "phone_bound_to_other_person"


class CancelCutoffPassed(DomainError):
    """The deadline for a person's cancellation has passed."""

    code = "cancel_cutoff_passed"

    def __init__(self, cancel_deadline: str) -> None:
        super().__init__(cancel_deadline=cancel_deadline)


class InvalidState(DomainError):
    """The booking's status does not allow this action."""

    code = "invalid_state"


class RebookCooldown(DomainError):
    """This person cancelled a booking of this service too recently to book it again."""

    code = "rebook_cooldown"

    def __init__(self, retry_at: str) -> None:
        super().__init__(retry_at=retry_at)


class RescheduleLimitReached(DomainError):
    """This booking was already rescheduled the allowed number of times."""

    code = "reschedule_limit_reached"


class EntryExists(DomainError):
    """This identity already entered the draw of this office and date."""

    code = "entry_exists"

    def __init__(self, entry_id: str | None) -> None:
        super().__init__(entry_id=entry_id)


class EntriesClosed(DomainError):
    """This office takes no entries for this date now."""

    code = "entries_closed"


class DrawPending(DomainError):
    """This day is released by a draw that has not finished yet."""

    code = "draw_pending"

    def __init__(self, draw_at: str) -> None:
        super().__init__(draw_at=draw_at)


class WaitlistEntryExists(DomainError):
    """This identity already waits for this service."""

    code = "waitlist_entry_exists"

    def __init__(self, waitlist_id: str | None) -> None:
        super().__init__(waitlist_id=waitlist_id)


class IdempotencyInProgress(DomainError):
    """A request with the same Idempotency-Key is still running."""

    code = "idempotency_in_progress"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__()
        # The seconds left on the running request's lease: then it has answered, or its claim
        # may be taken over.
        self.retry_after = max(1, retry_after)


class IdempotencyKeyReused(DomainError):
    """This Idempotency-Key was used with a different request."""

    code = "idempotency_key_reused"


class NotBookable(DomainError):
    """This window cannot be booked."""

    code = "not_bookable"


class RateLimited(DomainError):
    """Too many requests; retry later."""

    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)


class Unavailable(DomainError):
    """The durable store cannot be reached; nothing was booked."""

    code = "unavailable"
    retry_after = 2


def _every(cls: type[DomainError]) -> list[type[DomainError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _every(direct))]


ALL: tuple[type[DomainError], ...] = tuple(_every(DomainError))
BY_CODE: dict[str, type[DomainError]] = {cls.code: cls for cls in ALL if cls is not DomainError} | {
    "invalid_request": InvalidRequest
}
