"""``PreflightBalanceSensor``: wait until an account's balance covers a need (no batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from preflight.airflow.hooks import PreflightHook
from preflight.airflow.triggers import PreflightBalanceTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PreflightBalanceSensor"]


class PreflightBalanceSensor(BaseSensorOperator):
    """Succeed once ``account``'s balance (of ``meter``, default the vendor's first) covers
    ``need`` + ``reserve``; every poke is a balance reading, kept as a ``manual`` snapshot.

    ``mode="poke"`` holds a worker slot, ``mode="reschedule"`` frees it between pokes,
    ``deferrable=True`` waits in the triggerer (:class:`PreflightBalanceTrigger`).
    ``timeout`` and ``poke_interval`` are the sensor's own. A refused token or a blocked
    account fails at once; a vendor that is unavailable for one poke is poked again.
    """

    template_fields = ("need", "account", "reserve", "meter")
    ui_color = "#95d5b2"

    def __init__(
        self,
        *,
        need: Decimal | str | int,
        account: str | None = None,
        reserve: Decimal | str | int | None = None,
        meter: str | None = None,
        preflight_conn_id: str = PreflightHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.need = need
        self.account = account
        self.reserve = reserve
        self.meter = meter
        self.preflight_conn_id = preflight_conn_id
        self.deferrable = deferrable

    def _trigger(self, deadline: str | None) -> PreflightBalanceTrigger:
        return PreflightBalanceTrigger(
            need=str(self.need),
            account=self.account or None,
            reserve=None if self.reserve is None else str(self.reserve),
            meter=self.meter or None,
            preflight_conn_id=self.preflight_conn_id,
            poll_interval=float(self.poke_interval),
            deadline=deadline,
        )

    def execute(self, context: Context) -> Any:
        """Poke (or reschedule) as any sensor; deferrable: hand the wait to the triggerer."""
        if self.deferrable:
            deadline = PreflightBalanceTrigger.deadline_after(
                timedelta(seconds=float(self.timeout)), datetime.now(UTC)
            )
            self.defer(trigger=self._trigger(deadline), method_name="execute_complete")
        return super().execute(context)

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        """Resumed from the trigger: its ``sufficient`` event is the sensor's value."""
        status = event.get("status")
        if status == "sufficient":
            return dict(event)
        if status == "timeout":
            raise AirflowSensorTimeout(f"preflight: {event.get('message')}")
        raise AirflowFailException(f"preflight: {event.get('message') or status}")

    def poke(self, context: Context) -> bool:
        """One balance reading: covered or not; hopeless answers fail the task."""
        hook = PreflightHook(self.preflight_conn_id)
        try:
            event = asyncio.run(self._trigger(None)._poll(hook))
        finally:
            hook.close()
        if event is None:
            return False
        if event["status"] == "error":
            raise AirflowFailException(f"preflight: {event['message']}")
        self.log.info("preflight: balance %s covers %s", event["balance"], self.need)
        return True
