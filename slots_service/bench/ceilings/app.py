"""The bare Litestar app of the L_http ceilings: no application code, served as `slots-service
serve` serves the API (granian, 1 worker, uvloop). Run by http.py as
`python -m slots_service.bench.ceilings.app PORT`.

GET /ping answers a tiny JSON object; POST /v1/bookings decodes the bench's own booking body
(what loadgen.py sends the service) into a msgspec Struct and answers 201.
"""

from __future__ import annotations

import sys

import msgspec
from litestar import Litestar, get, post
from litestar.params import JSONBody


class Person(msgspec.Struct, forbid_unknown_fields=True):
    id_type: str
    id_number: str
    name: str
    phone: str


class Booking(msgspec.Struct, forbid_unknown_fields=True):
    office_id: str
    service_id: str
    date: str
    start: str
    person: Person


@get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@post("/v1/bookings")  # 201, as the service's booking
async def book(data: JSONBody[Booking]) -> dict[str, str]:
    return {"office_id": data.office_id, "date": data.date, "start": data.start}


app = Litestar(route_handlers=[ping, book], debug=False)


def main(port: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    # The options of __main__.serve, so that only the application differs.
    Granian(
        "slots_service.bench.ceilings.app:app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        websockets=False,
        backlog=2048,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main(int(sys.argv[1]))
