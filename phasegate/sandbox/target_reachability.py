"""Sandbox front: a target the ALB cannot reach, or that no listener sends traffic to, is not
healthy.

moto does not enforce security groups: it reports a registered target healthy whatever its
security groups say. On AWS the load balancer's health checks come from its own nodes (in its
subnets, carrying its security groups), so a target whose security groups admit neither the
ALB's groups nor its subnets' addresses on the health-check port never answers one: AWS
reports it `unhealthy`, reason `Target.Timeout`, "Request timed out". A migration that moves
compute behind a security group that forgets the ALB must see exactly that in the sandbox.

moto also calls every registered target healthy when no load balancer uses its group. On AWS
a target group that no listener's default action or rule forwards to (a weighted forward
counts, even at weight 0) is not health-checked: its targets report `unused`, reason
`Target.NotInUse`, and never become healthy, so a step that waits for a new group to be healthy
before pointing a listener at it waits forever on a real account. The sandbox says so too.

`TargetReachability` wraps moto's WSGI app and rewrites its DescribeTargetHealth answers:
every target moto calls healthy in a group no listener forwards to, or that the ALB could not
reach, is answered as AWS would. Nothing else is touched; targets it cannot place (no interface
found) keep moto's answer on reachability.
"""

import io
import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from phasegate.sandbox.latency import account_and_region

StartResponse = Callable[..., Any]

UNREACHABLE_REASON = "Target.Timeout"
UNREACHABLE_DESCRIPTION = "Request timed out"
NOT_IN_USE_REASON = "Target.NotInUse"
NOT_IN_USE_DESCRIPTION = "Target group is not configured to receive traffic from the load balancer"


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _forwarded(action: dict[str, Any]) -> set[str]:
    """Target group ARNs one listener or rule action forwards to, at any weight."""
    if action.get("Type") != "forward":
        return set()
    arns = {action["TargetGroupArn"]} if action.get("TargetGroupArn") else set()
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
    return arns | {g["TargetGroupArn"] for g in groups if g.get("TargetGroupArn")}


def _set_health(health: ET.Element, ns: str, state: str, reason: str, description: str) -> None:
    """Set a TargetHealth element's State, Reason and Description as AWS words them."""
    for name, text in (("State", state), ("Reason", reason), ("Description", description)):
        node = health.find(f"{ns}{name}")
        if node is None:
            node = ET.SubElement(health, f"{ns}{name}")
        node.text = text


def _admits(group: Any, port: int, sources: set[str], cidrs: list[str]) -> bool:
    """`group` lets TCP `port` in from one of `sources` (groups) or from all of `cidrs`."""
    for rule in group.ingress_rules:
        if rule.ip_protocol not in ("-1", "tcp"):
            continue
        if rule.ip_protocol == "tcp" and not (rule.from_port <= port <= rule.to_port):
            continue
        if (rule.source_group or {}).get("GroupId") in sources:
            return True
        cidr = (rule.ip_range or {}).get("CidrIp")
        if cidr and cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            if all(ipaddress.ip_network(c).subnet_of(net) for c in cidrs):  # type: ignore[arg-type]
                return True
    return False


class _Reach:
    """What decides reachability in one account and region: the ALB side of a target group
    and the security groups of each target."""

    def __init__(self, environ: dict[str, Any]) -> None:
        from moto.ec2.models import ec2_backends
        from moto.elbv2.models import elbv2_backends

        account, region = account_and_region(environ)
        self.elbv2 = elbv2_backends[account][region]
        self.ec2 = ec2_backends[account][region]

    def forwarding(self, target_group_arn: str) -> list[Any]:
        """The load balancers with a listener whose default action or a rule forwards to the
        group. Read from the listeners, not from moto's `load_balancer_arns`, which
        ModifyListener never updates."""
        return [
            balancer
            for balancer in self.elbv2.load_balancers.values()
            if any(
                target_group_arn in _forwarded(action.data)
                for listener in balancer.listeners.values()
                for rule in listener.rules.values()
                for action in rule.actions
            )
        ]

    def alb_side(self, balancers: list[Any]) -> tuple[set[str], list[str]]:
        """The security groups and subnet CIDRs the balancers' health checks come from."""
        sources = {sg for lb in balancers for sg in lb.security_groups}
        cidrs = [subnet.cidr_block for lb in balancers for subnet in lb.subnets]
        return sources, cidrs

    def target_groups(self, target_id: str) -> list[Any] | None:
        """The security groups on the target's interfaces; None when none is found."""
        enis = [
            eni
            for eni in self.ec2.enis.values()
            if (eni.instance is not None and eni.instance.id == target_id)
            or eni.private_ip_address == target_id
        ]
        if not enis:
            return None
        return list({g.id: g for eni in enis for g in eni.group_set}.values())

    def port(self, target_group_arn: str, target_port: int) -> int:
        group = self.elbv2.target_groups[target_group_arn]
        health = group.health_check_port
        return target_port if health in (None, "traffic-port") else int(health)


class TargetReachability:
    """WSGI middleware: DescribeTargetHealth says `unused` for targets of a group no listener
    forwards to, and `unhealthy` for targets the ALB cannot reach."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("HTTP_X_AMZ_TARGET"):
            return self.app(environ, start_response)
        params = parse_qs(_body(environ).decode(errors="replace"))
        if params.get("Action", [""])[0] != "DescribeTargetHealth":
            return self.app(environ, start_response)
        answered: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            answered.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(self.app(environ, keep))
        if answered["status"].startswith("200"):
            body = self._rewrite(environ, params.get("TargetGroupArn", [""])[0], body)
        headers = [(k, v) for k, v in answered["headers"] if k.lower() != "content-length"]
        start_response(answered["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _rewrite(environ: dict[str, Any], target_group_arn: str, body: bytes) -> bytes:
        root = ET.fromstring(body)
        namespace = root.tag[1 : root.tag.index("}")] if root.tag.startswith("{") else ""
        ns = f"{{{namespace}}}" if namespace else ""
        reach = _Reach(environ)
        if target_group_arn not in reach.elbv2.target_groups:
            return body
        balancers = reach.forwarding(target_group_arn)
        sources, cidrs = reach.alb_side(balancers)
        changed = False
        for member in root.iter(f"{ns}member"):
            health = member.find(f"{ns}TargetHealth")
            state = member.findtext(f"{ns}TargetHealth/{ns}State")
            target_id = member.findtext(f"{ns}Target/{ns}Id")
            port = member.findtext(f"{ns}Target/{ns}Port")
            if health is None or state != "healthy" or not target_id or not port:
                continue
            if not balancers:
                _set_health(health, ns, "unused", NOT_IN_USE_REASON, NOT_IN_USE_DESCRIPTION)
                changed = True
                continue
            groups = reach.target_groups(target_id)
            health_port = reach.port(target_group_arn, int(port))
            if groups is None or any(_admits(g, health_port, sources, cidrs) for g in groups):
                continue
            _set_health(health, ns, "unhealthy", UNREACHABLE_REASON, UNREACHABLE_DESCRIPTION)
            changed = True
        if not changed:
            return body
        if namespace:
            ET.register_namespace("", namespace)
        return ET.tostring(root, encoding="utf-8", xml_declaration=False)
