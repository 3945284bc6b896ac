"""A fleet's `max_concurrency` as a Prefect global concurrency limit, held per environment.

The fleet takes one slot (with a lease) before it creates an environment's flow run and gives
it back once that environment's last run is final. The limit lives on the Prefect server, so
it holds across workers, machines and fleet runs sharing its name; a fleet process that dies
frees its slots when their leases run out instead of blocking the limit forever.
"""

from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from starlette import status

LEASE_SECONDS = 60.0


class FleetSlots:
    """Slots of the global concurrency limit `name`, made (or resized) to `limit`."""

    def __init__(self, name: str, limit: int, lease_seconds: float = LEASE_SECONDS) -> None:
        self.name, self.limit, self.lease_seconds = name, limit, lease_seconds
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(name, limit)

    def try_take(self) -> UUID | None:
        """A lease on one slot, or None when every slot is taken (the server says 423)."""
        with get_client(sync_client=True) as client:
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[self.name],
                    slots=1,
                    mode="concurrency",
                    lease_duration=self.lease_seconds,
                )
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == status.HTTP_423_LOCKED:
                    return None
                raise
        return UUID(response.json()["lease_id"])

    def renew(self, lease: UUID) -> None:
        with get_client(sync_client=True) as client:
            client.renew_concurrency_lease(lease, lease_duration=self.lease_seconds)

    def release(self, lease: UUID) -> None:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease)

    def active(self) -> int:
        """Slots held now, by any fleet process (read from the server)."""
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name(self.name).active_slots
