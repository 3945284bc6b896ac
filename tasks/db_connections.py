"""`database.connections`: a PostgreSQL parameter group sized for the instance's connections.

RDS's default parameter group leaves idle transactions open forever (a crashed worker holds
its locks and its connection until someone kills it), never probes dead TCP peers, and logs
no slow statement. Phase 2 gives each of the environment's instances its own parameter group
of the instance's family (read from its current group, e.g. postgres16) with:

- max_connections sized to the class's memory (tasks.connection_limits: the RDS default
  formula written down as a number, 112 on a 1 GiB db.t4g.micro);
- idle_in_transaction_session_timeout, tcp_keepalives_idle, log_min_duration_statement from
  config (`database.*`).

Attaching a new group, and max_connections (a static parameter), take effect at the next
reboot: RDS reports the instance `pending-reboot`. phasegate reboots only with
`database.reboot: in-window`, and then the step has an approval of its own (the phase's
window bounds it); otherwise the pending reboot is recorded and shown, and the dynamic
parameters of an already attached group apply at once. verify reads the values back with
DescribeDBParameters and the instance's ParameterApplyStatus. Rollback attaches the group
found before and deletes the one the step made (only if it carries the created-by tag).
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import DATABASE_IAM_ACTIONS, Discovery
from phasegate.steps import (
    CREATED_BY_TAG,
    Change,
    Observation,
    Record,
    Reversibility,
    Settling,
    Step,
    StepRefused,
    VerificationFailed,
    diff_entry,
)
from tasks.connection_limits import max_connections

STATIC = frozenset({"max_connections"})
"""Parameters PostgreSQL reads only at start: RDS applies them at the next reboot."""


class ConnectionsObservation(Observation):
    """Per instance: its class, its parameter group now, that group's family, apply status,
    and the values our parameters have in the group the step would attach."""

    instances: dict[str, dict[str, Any]]


class DatabaseConnections(Step):
    """Tuned parameter group (connections, idle and keepalive timeouts, slow-query log)."""

    id = "database.connections"
    phase = 2
    title = "RDS parameter group: max_connections by memory, idle and keepalive timeouts"
    iam_actions = (
        *DATABASE_IAM_ACTIONS,
        "rds:ListTagsForResource",
        "rds:DescribeDBParameterGroups",
        "rds:DescribeDBParameters",
        "rds:CreateDBParameterGroup",
        "rds:ModifyDBParameterGroup",
        "rds:DeleteDBParameterGroup",
        "rds:ModifyDBInstance",
        "rds:RebootDBInstance",
    )

    def target(self) -> dict[str, Any]:
        return self.ctx.config.database.model_dump()

    def terraform_decisions(self) -> dict[str, Any]:
        """terraform/'s tuned group on, with the config's values; max_connections for the
        class phase 1 leaves (targets.rds_instance_class), which verify checks against the
        instance's live class."""
        values = self.parameters(self.ctx.config.targets.rds_instance_class)
        return {
            "enable_db_tuning": True,
            "db_max_connections": int(values["max_connections"]),
            "db_idle_in_transaction_session_timeout_ms": int(
                values["idle_in_transaction_session_timeout"]
            ),
            "db_tcp_keepalives_idle_seconds": int(values["tcp_keepalives_idle"]),
            "db_log_min_duration_statement_ms": int(values["log_min_duration_statement"]),
        }

    def terraform_applied(self) -> None:
        """With `reboot: in-window`, reboot each instance Terraform's apply left
        pending-reboot, as the API form does: a reboot is no configuration, so Terraform
        neither records nor undoes it."""
        if not self.reboots:
            return
        for db in Discovery(self.ctx.config, self.clients).databases():
            if self._state(db.identifier)["apply_status"] == "pending-reboot":
                self._reboot(db.identifier)

    @property
    def reboots(self) -> bool:
        return self.ctx.config.database.reboot == "in-window"

    @staticmethod
    def group_name(identifier: str, family: str) -> str:
        return f"{identifier}-{family}-connections"

    def parameters(self, instance_class: str) -> dict[str, str]:
        """The values the config asks for on `instance_class`, as RDS stores them (strings)."""
        cfg = self.ctx.config.database
        return {
            "max_connections": str(max_connections(instance_class, cfg.memory_per_connection_mib)),
            "idle_in_transaction_session_timeout": str(cfg.idle_in_transaction_session_timeout_ms),
            "tcp_keepalives_idle": str(cfg.tcp_keepalives_idle_seconds),
            "log_min_duration_statement": str(cfg.log_min_duration_statement_ms),
        }

    # -- reading -------------------------------------------------------------------------

    def _instance(self, identifier: str) -> dict[str, Any]:
        return self.clients.rds.describe_db_instances(DBInstanceIdentifier=identifier)[
            "DBInstances"
        ][0]

    def _group(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.clients.rds.describe_db_parameter_groups(DBParameterGroupName=name)
        except AwsCallError as exc:
            if exc.code == "DBParameterGroupNotFound":
                return None
            raise
        return next(iter(found["DBParameterGroups"]), None)

    def _values(self, group: str, names: list[str]) -> dict[str, str]:
        """Our parameters' values in `group`, read back from DescribeDBParameters."""
        pages = self.clients.rds.get_paginator("describe_db_parameters").paginate(
            DBParameterGroupName=group
        )
        return {
            p["ParameterName"]: p.get("ParameterValue")
            for page in pages
            for p in page["Parameters"]
            if p["ParameterName"] in names and p.get("ParameterValue") is not None
        }

    def _state(self, identifier: str) -> dict[str, Any]:
        live = self._instance(identifier)
        [attached] = live.get("DBParameterGroups") or [{}]
        group = attached.get("DBParameterGroupName")
        found = self._group(group) if group else None
        family = found["DBParameterGroupFamily"] if found else None
        return {
            "instance_class": live["DBInstanceClass"],
            "status": live["DBInstanceStatus"],
            "parameter_group": group,
            "apply_status": attached.get("ParameterApplyStatus"),
            "family": family,
        }

    def observe(self) -> ConnectionsObservation:
        instances = {}
        for db in Discovery(self.ctx.config, self.clients).databases():
            state = self._state(db.identifier)
            if state["family"] is None:
                raise StepRefused(
                    f"{self.ctx.config.name}: {self.id}: RDS instance {db.identifier} shows no "
                    "parameter group family; cannot pick the tuned group's family"
                )
            # The family of a group we attached is ours; else the current group's.
            ours = self.group_name(db.identifier, state["family"])
            wanted = self.parameters(state["instance_class"])
            exists = self._group(ours) is not None
            state["tuned"] = {
                "name": ours,
                "exists": exists,
                "values": self._values(ours, list(wanted)) if exists else {},
            }
            instances[db.identifier] = state
        return ConnectionsObservation(instances=instances)

    # -- planning ------------------------------------------------------------------------

    def _done(self, state: dict[str, Any], wanted: dict[str, str]) -> bool:
        tuned = state["tuned"]
        return (
            state["parameter_group"] == tuned["name"]
            and tuned["values"] == wanted
            and (state["apply_status"] == "in-sync" or not self.reboots)
        )

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, ConnectionsObservation)
        before: dict[str, Any] = {}
        desired: dict[str, Any] = {}
        actions: list[str] = []
        for identifier, state in obs.instances.items():
            wanted = self.parameters(state["instance_class"])
            if self._done(state, wanted):
                continue
            name = state["tuned"]["name"]
            before[identifier] = {
                "parameter_group": state["parameter_group"],
                "apply_status": state["apply_status"],
                "tuned_existed": state["tuned"]["exists"],
                "tuned_values": state["tuned"]["values"],
            }
            desired[identifier] = {
                "parameter_group": name,
                "family": state["family"],
                "parameters": wanted,
                "reboot": self.reboots,
            }
            if not state["tuned"]["exists"]:
                actions.append(f"rds:CreateDBParameterGroup {name} ({state['family']})")
            if state["tuned"]["values"] != wanted:
                actions.append(
                    f"rds:ModifyDBParameterGroup {name}: "
                    + ", ".join(f"{k}={v}" for k, v in wanted.items())
                )
            if state["parameter_group"] != name:
                actions.append(f"rds:ModifyDBInstance {identifier} DBParameterGroupName={name}")
            actions.append(
                f"rds:RebootDBInstance {identifier} (in the window, approved on its own)"
                if self.reboots
                else f"{identifier} left pending-reboot: max_connections applies at the next "
                "reboot (database.reboot: never)"
            )
        if not desired:
            return None
        return self.change(
            "tuned parameter group for "
            + ", ".join(
                f"{i} (max_connections {d['parameters']['max_connections']})"
                for i, d in desired.items()
            ),
            actions,
            0.0,  # parameter groups cost nothing
            reversibility=Reversibility(
                restart_needed=self.reboots,
                rollback_possible=True,
                expected_disruption=(
                    "a reboot of each instance (about a minute of refused connections)"
                    if self.reboots
                    else "none now; the static max_connections waits for the next reboot"
                ),
            ),
            before=before,
            desired=desired,
        )

    # -- changing ------------------------------------------------------------------------

    def _tags(self) -> list[dict[str, str]]:
        tags = {**self.ctx.config.discovery.tags, CREATED_BY_TAG: self.id}
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    def apply(self, change: Change) -> dict[str, Any]:
        after: dict[str, Any] = {}
        rds = self.clients.rds
        for identifier, want in change.desired.items():
            name = want["parameter_group"]
            if self._group(name) is None:
                rds.create_db_parameter_group(
                    DBParameterGroupName=name,
                    DBParameterGroupFamily=want["family"],
                    Description=f"phasegate {self.id}: connections of {identifier}",
                    Tags=self._tags(),
                )
                self.progress(**{identifier: {"created_group": name}})
            if self._values(name, list(want["parameters"])) != want["parameters"]:
                rds.modify_db_parameter_group(
                    DBParameterGroupName=name,
                    Parameters=[
                        {
                            "ParameterName": key,
                            "ParameterValue": value,
                            "ApplyMethod": "pending-reboot" if key in STATIC else "immediate",
                        }
                        for key, value in want["parameters"].items()
                    ],
                )
            state = self._state(identifier)
            if state["parameter_group"] != name:
                rds.modify_db_instance(
                    DBInstanceIdentifier=identifier,
                    DBParameterGroupName=name,
                    ApplyImmediately=True,
                )
                self.progress(**{identifier: {"attached": name}})
            state = self._wait_available(identifier, "to take parameter group " + name)
            if want["reboot"] and state["apply_status"] == "pending-reboot":
                state = self._reboot(identifier)
            if state["apply_status"] == "pending-reboot" and self.log is not None:
                self.log.warning(
                    "database.pending_reboot",
                    resource=identifier,
                    detail="max_connections and the new group apply at the next reboot",
                )
            after[identifier] = {
                "parameter_group": name,
                "parameters": want["parameters"],
                "apply_status": state["apply_status"],
            }
        return after

    def _reboot(self, identifier: str) -> dict[str, Any]:
        """Reboot the instance (journaled inside an apply, so a killed run knows it was sent)
        and wait until it is available again; its state then."""
        self.clients.rds.reboot_db_instance(DBInstanceIdentifier=identifier)
        self.progress(**{identifier: {"rebooted": True}})
        return self._wait_available(identifier, "to reboot", kind="rds_reboot")

    def _wait_available(self, identifier: str, what: str, kind: str = "rds_modify") -> dict:
        return self.ctx.wait(
            f"RDS instance {identifier} {what}",
            lambda: self._state(identifier),
            lambda s: s["status"] == "available" and s["apply_status"] != "applying",
            kind=kind,
        )

    # -- proving -------------------------------------------------------------------------

    def verify(self, record: Record) -> None:
        """The group attached, its values read back, and the apply status as recorded."""
        if record.change is None:
            obs = self.observe()
            undone = [
                i
                for i, s in obs.instances.items()
                if not self._done(s, self.parameters(s["instance_class"]))
            ]
            if undone:
                raise VerificationFailed.of(
                    f"{self.ctx.config.name}: {self.id}",
                    {f"{i}.parameter_group": diff_entry("tuned", "not tuned") for i in undone},
                )
            return
        diff: dict[str, Any] = {}
        busy: list[str] = []
        for identifier, want in record.after.items():
            if "parameters" not in want:
                continue  # a half-applied entry: nothing promised yet
            state = self._state(identifier)
            if state["status"] != "available" or state["apply_status"] == "applying":
                busy.append(f"{identifier} is {state['status']} ({state['apply_status']})")
                continue
            if state["parameter_group"] != want["parameter_group"]:
                diff[f"{identifier}.parameter_group"] = diff_entry(
                    want["parameter_group"], state["parameter_group"]
                )
            values = self._values(want["parameter_group"], list(want["parameters"]))
            for key, value in want["parameters"].items():
                if values.get(key) != value:
                    diff[f"{want['parameter_group']}.{key}"] = diff_entry(value, values.get(key))
            if want["apply_status"] == "in-sync" and state["apply_status"] != "in-sync":
                diff[f"{identifier}.apply_status"] = diff_entry("in-sync", state["apply_status"])
        if diff:
            raise VerificationFailed.of(f"{self.ctx.config.name}: {self.id}", diff)
        if busy:
            raise Settling(f"{self.ctx.config.name}: {self.id}: " + "; ".join(busy))

    def rollback(self, record: Record) -> None:
        """Attach the group from before (rebooting only as the config allows), then delete
        the group this step created, or put back the values of one that was there (a
        parameter it did not have before stays set: unsetting needs ResetDBParameterGroup)."""
        before = record.change.before if record.change else record.before
        rds = self.clients.rds
        for identifier, was in before.items():
            state = self._state(identifier)
            if state["parameter_group"] != was["parameter_group"]:
                rds.modify_db_instance(
                    DBInstanceIdentifier=identifier,
                    DBParameterGroupName=was["parameter_group"],
                    ApplyImmediately=True,
                )
            state = self._wait_available(identifier, "to take back " + was["parameter_group"])
            if self.reboots and state["apply_status"] == "pending-reboot":
                self._reboot(identifier)
            name = (
                (record.change.desired if record.change else {})
                .get(identifier, {})
                .get("parameter_group")
            )
            if name and not was["tuned_existed"]:
                self._delete_if_ours(name)
            elif name and was["tuned_values"]:  # the group was there: put its values back
                rds.modify_db_parameter_group(
                    DBParameterGroupName=name,
                    Parameters=[
                        {
                            "ParameterName": key,
                            "ParameterValue": value,
                            "ApplyMethod": "pending-reboot" if key in STATIC else "immediate",
                        }
                        for key, value in was["tuned_values"].items()
                    ],
                )

    def _delete_if_ours(self, name: str) -> None:
        group = self._group(name)
        if group is None:
            return
        tags = self.clients.rds.list_tags_for_resource(ResourceName=group["DBParameterGroupArn"])
        if {"Key": CREATED_BY_TAG, "Value": self.id} in tags.get("TagList", []):
            self.clients.rds.delete_db_parameter_group(DBParameterGroupName=name)

    def verify_rollback(self, record: Record) -> None:
        before = record.change.before if record.change else record.before
        for identifier, was in before.items():
            state = self._state(identifier)
            if state["parameter_group"] != was["parameter_group"]:
                raise VerificationFailed(
                    f"{self.ctx.config.name}: {self.id}: {identifier} has parameter group "
                    f"{state['parameter_group']}, expected {was['parameter_group']} after rollback"
                )
