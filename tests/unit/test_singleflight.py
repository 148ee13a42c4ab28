import asyncio

import pytest

from binderhub_service.singleflight import SingleFlight


async def test_callers_in_flight_share_the_outcome_and_one_giving_up_stops_nobody():
    flights: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()
    calls = []

    async def call() -> int:
        calls.append(1)
        await gate.wait()
        return 42

    first = asyncio.ensure_future(flights.run("k", call))
    others = [asyncio.ensure_future(flights.run("k", call)) for _ in range(9)]
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await asyncio.gather(*others) == [42] * 9 and calls == [1]
    assert not flights.in_flight("k")


async def test_an_error_reaches_every_caller_and_is_not_kept():
    flights: SingleFlight[int] = SingleFlight()

    async def fail() -> int:
        await asyncio.sleep(0)
        raise ValueError("no")

    results = await asyncio.gather(
        *(flights.run("k", fail) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)

    async def succeed() -> int:
        return 1

    assert await flights.run("k", succeed) == 1
    with pytest.raises(ValueError):
        await flights.run("other", fail)
