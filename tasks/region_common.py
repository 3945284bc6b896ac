"""What every `regions.expand` sub-step shares: the second region, its tags, and one lifecycle.

`regions.expand` builds a standby copy of the environment in `regions.secondary`, one Step
per kind of resource (network, alb, database, cache, compute, dns), so a failure half-way
resumes from the sub-step that failed and a rollback tears down in the reverse order.

Each sub-step describes its resources by name and intent, never by ids the step before it
made: the whole phase is planned (and approved) before the first sub-step runs, and a plan
that named the new VPC's id could not be the plan the later sub-step makes once the VPC
exists. So `desired()` and `current()` return the same shape (names, sizes, paths); the plan
is their difference and verify proves `current() == desired`. Apply looks the upstream
resources up by their tags at the time it runs.

Everything made carries the environment's discovery tags, `PhasegateRole: secondary` and
`phasegate:created-by = <step id>`: re-runs reuse it, rollback deletes exactly it (also what
a run killed half-way left, without relying on what it journaled).

With `executor: terraform` each sub-step enables its part of terraform/'s secondary_region
module instead (`terraform_part`), which names and tags what it makes as `make` would, so the
same `current()` verifies either form.
"""

from abc import abstractmethod
from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import DISCOVERY_IAM_ACTIONS, Discovery, LoadBalancer
from phasegate.region_cost import SecondaryPart, monthly_cost_of_secondary
from phasegate.secondary_region import secondary_tags
from phasegate.steps import (
    CREATED_BY_TAG,
    Change,
    Observation,
    Record,
    Reversibility,
    Step,
    StepRefused,
    VerificationFailed,
    diff_entry,
    flatten,
)

NETWORK_STEP = "regions.expand.network"
ALB_STEP = "regions.expand.alb"
PRICING_IAM_ACTIONS = DISCOVERY_IAM_ACTIONS
"""Each sub-step's plan prices its part from the primary's whole inventory (region_cost)."""


class RegionObservation(Observation):
    """The sub-step's resources in the second region (None: not asked for)."""

    region: str | None
    current: dict[str, Any] | None
    desired: dict[str, Any] | None


def tag_list(tags: dict[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in tags.items()]


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    """AWS spells tags Key/Value or key/value depending on the service."""
    return {t.get("Key", t.get("key", "")): t.get("Value", t.get("value", "")) for t in tags or []}


def pages(client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated listing: an account may hold more than one page of them."""
    paginator = client.get_paginator(operation)
    return [item for page in paginator.paginate(**params) for item in page[key]]


def missing(error: AwsCallError, *codes: str) -> bool:
    """True when `error` says the resource is not there (gone already: nothing to undo)."""
    return error.code in codes or "NotFound" in (error.code or "")


class RegionStep(Step):
    """A sub-step of `regions.expand`: subclasses say what they want and how to make it."""

    phase = 3

    # -- where and what ------------------------------------------------------------------

    @property
    def region(self) -> str | None:
        return self.ctx.config.regions.secondary

    def client(self, service: str, region: str | None = None) -> Any:
        return self.clients.client(service, region or self.region)

    def target(self) -> dict[str, Any]:
        return self.ctx.config.regions.model_dump()

    def role_tags(self) -> dict[str, str]:
        """What marks every resource of the second region (the contract with failover)."""
        return secondary_tags(self.ctx.config)

    def tags(self, step: str | None = None) -> dict[str, str]:
        """The tags of what `step` (default: this one) made in the second region."""
        return {**self.role_tags(), CREATED_BY_TAG: step or self.id}

    def name(self, suffix: str, limit: int = 255) -> str:
        """`ENV-suffix`, the environment's part shortened so it fits AWS's `limit`."""
        room = limit - len(suffix) - 1
        return f"{self.ctx.config.name[:room].rstrip('-')}-{suffix}"

    def ec2_ids(self, kind: str, step: str, region: str | None = None) -> list[str]:
        """Ids of the EC2 `kind` (vpcs, subnets, security-groups, ...) `step` made there."""
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.tags(step).items()]
        ec2 = self.client("ec2", region)
        method, key, id_key = {
            "vpcs": ("describe_vpcs", "Vpcs", "VpcId"),
            "subnets": ("describe_subnets", "Subnets", "SubnetId"),
            "security-groups": ("describe_security_groups", "SecurityGroups", "GroupId"),
            "internet-gateways": (
                "describe_internet_gateways",
                "InternetGateways",
                "InternetGatewayId",
            ),
            "route-tables": ("describe_route_tables", "RouteTables", "RouteTableId"),
        }[kind]
        found = getattr(ec2, method)(Filters=filters)[key]
        return sorted(item[id_key] for item in found)

    def security_group(self, role: str, region: str | None = None) -> str | None:
        """The id of the security group `regions.expand.alb` made for `role` (alb or app)."""
        filters = [
            {"Name": f"tag:{k}", "Values": [v]} for k, v in {**self.tags(ALB_STEP)}.items()
        ] + [{"Name": "group-name", "Values": [self.name(role)]}]
        found = self.client("ec2", region).describe_security_groups(Filters=filters)
        groups = found["SecurityGroups"]
        return groups[0]["GroupId"] if groups else None

    def primary_load_balancer(self) -> LoadBalancer:
        """The primary region's internet-facing ALB: what the second region copies."""
        found = [
            lb
            for lb in Discovery(self.ctx.config, self.clients).load_balancers()
            if lb.scheme == "internet-facing"
        ]
        if len(found) != 1:
            names = ", ".join(lb.name for lb in found) or "none"
            raise StepRefused(
                f"{self.where()}: the second region copies exactly one internet-facing ALB "
                f"of the primary; found {names}"
            )
        return found[0]

    def load_balancer(self, region: str | None = None) -> dict[str, Any] | None:
        """The ALB `regions.expand.alb` made in the second region, as AWS describes it."""
        elbv2 = self.client("elbv2", region)
        balancers = pages(elbv2, "describe_load_balancers", "LoadBalancers")
        wanted = self.tags(ALB_STEP)
        for i in range(0, len(balancers), 20):
            chunk = balancers[i : i + 20]
            arns = [lb["LoadBalancerArn"] for lb in chunk]
            described = elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]
            tags = {d["ResourceArn"]: tag_dict(d.get("Tags")) for d in described}
            for lb in chunk:
                found = tags.get(lb["LoadBalancerArn"], {})
                if all(found.get(k) == v for k, v in wanted.items()):
                    return dict(lb)
        return None

    def target_group(self, region: str | None = None) -> dict[str, Any] | None:
        """The target group `regions.expand.alb` made in the second region."""
        elbv2 = self.client("elbv2", region)
        try:
            groups = elbv2.describe_target_groups(Names=[self.name("app", 32)])["TargetGroups"]
        except AwsCallError as exc:
            if missing(exc, "TargetGroupNotFound"):
                return None
            raise
        return dict(groups[0]) if groups else None

    def own_security_group(self, region: str) -> dict[str, Any] | None:
        """The one security group this step made (a data store's), as AWS describes it."""
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.tags().items()]
        found = self.client("ec2", region).describe_security_groups(Filters=filters)
        return found["SecurityGroups"][0] if found["SecurityGroups"] else None

    def data_group_state(self, region: str) -> dict[str, Any] | None:
        """This step's data-store security group as `current` reports it: its name and the
        ports it opens to the app's group (None: no group)."""
        group = self.own_security_group(region)
        if group is None:
            return None
        app = self.security_group("app", region)
        ports = sorted(
            r["FromPort"]
            for r in group.get("IpPermissions", [])
            if any(p.get("GroupId") == app for p in r.get("UserIdGroupPairs", []))
        )
        return {"name": group["GroupName"], "from_app": ports}

    def make_data_group(self, suffix: str, port: int) -> str:
        """A security group for a data store in the second region's VPC, open on `port` to
        the app's security group only (regions.expand.alb made both)."""
        ec2 = self.client("ec2")
        app = self.security_group("app")
        vpcs = self.ec2_ids("vpcs", NETWORK_STEP)
        if app is None or not vpcs:
            raise StepRefused(
                f"{self.where()}: no VPC or app security group in {self.region}; "
                f"{NETWORK_STEP} and {ALB_STEP} run first"
            )
        group = self.own_security_group(str(self.region))
        if group is None:
            tags = {**self.tags(), "Name": self.name(suffix)}
            made = ec2.create_security_group(
                GroupName=self.name(suffix),
                Description=f"{suffix}: from the app only",
                VpcId=vpcs[0],
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(tags)}],
            )["GroupId"]
            self.progress(security_group=made)
            group_id = made
        else:
            group_id = group["GroupId"]
        state = self.data_group_state(str(self.region))
        if port not in (state["from_app"] if state else []):
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "UserIdGroupPairs": [{"GroupId": app}],
                    }
                ],
            )
        return group_id

    def delete_security_group(self, region: str, group: str) -> None:
        """Delete `group`, waiting while AWS still holds network interfaces in it (those of a
        deleted ALB or task are released minutes after the deletion returns)."""
        ec2 = self.client("ec2", region)

        def attempt() -> bool:
            try:
                ec2.delete_security_group(GroupId=group)
            except AwsCallError as exc:
                if exc.code == "DependencyViolation":
                    return False
                if not missing(exc, "InvalidGroup.NotFound"):
                    raise
            return True

        self.ctx.wait(f"security group {group} in {region} deleted", attempt, bool)

    def where(self) -> str:
        return f"{self.ctx.config.name}: {self.id}"

    def region_of(self, record: Record) -> str | None:
        """The region a Record's change was made in (the config may have changed since)."""
        if record.change is not None and record.change.desired.get("region"):
            return str(record.change.desired["region"])
        return str(record.after.get("region") or "") or self.region

    # -- pricing -------------------------------------------------------------------------

    def secondary_cost(self, part: SecondaryPart) -> tuple[float, str]:
        """What this step's `part` of the second region adds a month, priced with that
        region's table from a mirror of the primary (phasegate.region_cost), and a note."""
        return monthly_cost_of_secondary(self.ctx.config, self.ctx.inventory(), [part])

    # -- what subclasses say -------------------------------------------------------------

    @abstractmethod
    def desired(self) -> dict[str, Any]:
        """What the config asks for in the second region, by names and settings."""

    @abstractmethod
    def current(self, region: str) -> dict[str, Any]:
        """What the second region shows now, in `desired()`'s shape ({} when nothing)."""

    @abstractmethod
    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Create (or complete) the resources; return what was made, by id."""

    @abstractmethod
    def teardown(self, region: str) -> None:
        """Delete everything this step made in `region` (found by its tags); idempotent."""

    @abstractmethod
    def leftovers(self, region: str) -> list[str]:
        """What this step made that is still in `region`, one name each."""

    @abstractmethod
    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        """The change's summary, its actions and its monthly cost delta."""

    def blockers(self) -> list[str]:
        """Why AWS would refuse the change as things stand (shown by plan, refused by run)."""
        return []

    @abstractmethod
    def terraform_part(self) -> dict[str, Any]:
        """The secondary_region module's variables that make this sub-step's part."""

    # -- through Terraform ---------------------------------------------------------------

    def terraform_decisions(self) -> dict[str, Any]:
        return {} if self.region is None else self.terraform_part()

    def terraform_prerequisites(self) -> dict[str, Any]:
        """The parts of the sub-steps this one runs after (and of theirs)."""
        from tasks.registry import STEPS  # the registry imports every sub-step's module

        found: dict[str, Any] = {}
        for step_id in self.after:
            earlier = STEPS[step_id](self.ctx)
            found.update(earlier.terraform_prerequisites())
            found.update(earlier.terraform_decisions())
        return found

    # -- the lifecycle -------------------------------------------------------------------

    def observe(self) -> RegionObservation:
        if self.region is None:
            return RegionObservation(region=None, current=None, desired=None)
        return RegionObservation(
            region=self.region, current=self.current(self.region), desired=self.desired()
        )

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, RegionObservation)
        if obs.desired is None or obs.current == obs.desired:
            return None
        summary, actions, delta = self.describe(obs.desired)
        return self.change(
            summary,
            actions,
            delta,
            reversibility=Reversibility(
                restart_needed=False,
                rollback_possible=True,
                expected_disruption="none: the primary region is not touched",
            ),
            before={"region": obs.region, "found": obs.current},
            desired=obs.desired,
            blockers=self.blockers(),
        )

    def apply(self, change: Change) -> dict[str, Any]:
        return {"region": change.desired["region"], **self.make(change.desired)}

    def verify(self, record: Record) -> None:
        if record.change is None:
            if self.region is None:
                return
            expected = self.desired()
        else:
            expected = record.change.desired
        found = flatten(self.current(str(expected["region"])))
        wanted = flatten(expected)
        diff = {k: diff_entry(v, found.get(k)) for k, v in wanted.items() if found.get(k) != v} | {
            k: diff_entry(None, v) for k, v in found.items() if k not in wanted
        }
        if diff:
            raise VerificationFailed.of(self.where(), diff)

    def rollback(self, record: Record) -> None:
        region = self.region_of(record)
        if region:
            self.teardown(region)

    def verify_rollback(self, record: Record) -> None:
        region = self.region_of(record)
        left = self.leftovers(region) if region else []
        if left:
            raise VerificationFailed(
                f"{self.where()}: still in {region} after rollback: {', '.join(left)}"
            )
