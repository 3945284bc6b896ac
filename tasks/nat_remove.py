"""Phase 1, network: remove the NAT gateways without cutting anyone off.

The only workloads phasegate moves off the NAT gateways are the environment's own ECS
services behind a load balancer: they can reach the internet from the public subnets with
public IPs, behind a security group that admits only the ALB, and S3 traffic goes through a
free gateway endpoint. Everything else that would lose egress blocks the step (tasks.nat_survey)
unless the config accepts the loss, and the data stores keep admitting the moved tasks
(tasks.data_access). Releasing the gateways' Elastic IPs changes the addresses the world sees
and cannot be undone: the plan and the approval form say so, listing them.
"""

from typing import Any

from phasegate.errors import AwsCallError, PhasegateError
from phasegate.inventory import DISCOVERY_IAM_ACTIONS, Inventory
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
from tasks import data_access, data_acl, nat_terraform
from tasks.nat_routes import (
    GONE_NAT_STATES,
    LIVE_NAT_STATES,
    REPLACES_TAG,
    current_route,
    delete_route,
    describe_nats,
    describe_route_tables,
    nat_routes,
    point_route,
    s3_endpoint,
    s3_service,
    tag_dict,
    tag_list,
    token,
)
from tasks.nat_survey import SURVEY_IAM_ACTIONS, NetworkSurvey
from tasks.security_groups import delete_security_group


class NatRemovalObservation(Observation):
    """What nat.remove starts from.

    `s3_endpoints` and `app_security_groups` hold, per VPC, the endpoint or group that
    existed before and was not made by phasegate (None otherwise): rollback keeps those and
    deletes what phasegate made.
    """

    inventory: Inventory
    nat_gateways: list[dict[str, Any]]
    nat_routes: list[dict[str, Any]]
    left_alone: list[dict[str, Any]]
    moves: list[dict[str, Any]]
    blockers: list[str]
    accepted: list[str]
    data_store_groups: dict[str, str]
    data_store_acl_entries: list[dict[str, Any]]
    private_cidrs: dict[str, list[str]]
    public_cidrs: dict[str, list[str]]
    route_tables: dict[str, list[str]]
    s3_endpoints: dict[str, dict[str, Any] | None]
    app_security_groups: dict[str, str | None]


class NatRemoval(Step):
    """Remove the NAT gateways without cutting any workload's egress.

    The order is what keeps the service up: the ECS tasks move first (a rolling replacement
    into the public subnets with public IPs, behind a security group admitting only the ALB),
    then the S3 gateway endpoint is added, then the 0.0.0.0/0 routes via NAT are dropped, then
    the gateways are deleted, and only once they are gone are their Elastic IPs released (AWS
    refuses to release an address a gateway still holds). Anything in a private subnet that
    phasegate cannot move (an EC2 instance, an Auto Scaling group, a Lambda function) makes
    the step refuse before it changes anything.
    """

    id = "nat.remove"
    phase = 1
    title = "Remove NAT gateways: tasks to public subnets, S3 endpoint, routes, NATs, EIPs"
    after = ("nat.assess",)  # its report is what the operator reads before removal
    iam_actions = (
        *DISCOVERY_IAM_ACTIONS,
        *SURVEY_IAM_ACTIONS,
        *data_access.DATA_ACCESS_IAM_ACTIONS,
        *data_acl.DATA_ACL_IAM_ACTIONS,
        "ec2:DescribeAddresses",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:DeleteSecurityGroup",
        "ec2:CreateTags",
        "ecs:UpdateService",
        "ec2:CreateVpcEndpoint",
        "ec2:ModifyVpcEndpoint",
        "ec2:DeleteVpcEndpoints",
        "ec2:DeleteRoute",
        "ec2:CreateRoute",
        "ec2:ReplaceRoute",
        "ec2:DeleteNatGateway",
        "ec2:CreateNatGateway",
        "ec2:ReleaseAddress",
        "ec2:AllocateAddress",
    )

    # ------------------------------------------------------------------ through Terraform

    def terraform_decisions(self) -> dict[str, Any]:
        """The tasks in the public subnets, the S3 endpoint, no NAT (tasks.nat_terraform)."""
        return {k: v for stage in nat_terraform.STAGES for k, v in stage.items()}

    def terraform_stages(self) -> list[dict[str, Any]]:
        return [dict(stage) for stage in nat_terraform.STAGES]

    def terraform_blockers(self, change: Change) -> list[str]:
        return nat_terraform.blockers(self.clients, change)

    def terraform_stage_applied(self) -> None:
        """Every ECS service of the environment stable: the move's rolling replacement done."""
        for service in self.ctx.inventory().services:
            self._wait_stable(service.cluster, service.name)

    # ------------------------------------------------------------------ helpers

    def _info(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.info(event, resource=resource, **kw)

    def _warn(self, event: str, resource: str, **kw: Any) -> None:
        if self.log:
            self.log.warning(event, resource=resource, **kw)

    def _ours(self, resource: dict[str, Any]) -> bool:
        """Made by this step (a run that stopped before its Record was kept, say)."""
        return tag_dict(resource.get("Tags")).get(CREATED_BY_TAG) == self.id

    @property
    def _env(self) -> str:
        return self.ctx.config.name

    def _our_tags(self, name: str, extra: dict[str, str] | None = None) -> list[dict[str, str]]:
        tags = {**self.ctx.config.discovery.tags, "Name": name, CREATED_BY_TAG: self.id}
        return tag_list({**tags, **(extra or {})})

    def _nats(self, **filters: list[str]) -> list[dict[str, Any]]:
        return describe_nats(self.clients, **filters)

    def _s3_endpoint(self, vpc_id: str) -> dict[str, Any] | None:
        return s3_endpoint(self.clients, self.ctx.config.aws.region, vpc_id)

    def _service(self, cluster: str, name: str) -> dict[str, Any]:
        return self.clients.ecs.describe_services(cluster=cluster, services=[name])["services"][0]

    @staticmethod
    def _network(svc: dict[str, Any]) -> tuple[list[str], list[str], bool]:
        net = svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        return (
            sorted(net.get("subnets", [])),
            sorted(net.get("securityGroups", [])),
            net.get("assignPublicIp") == "ENABLED",
        )

    # ------------------------------------------------------------------ observe / plan

    def observe(self) -> NatRemovalObservation:
        inventory = self.ctx.inventory()
        survey = NetworkSurvey(self)
        picture = survey.picture(inventory)
        nats = []
        for part in picture["vpcs"]:
            for raw in part["nat_gateways"]:
                addresses = raw.get("NatGatewayAddresses", [])
                nats.append(
                    {
                        "id": raw["NatGatewayId"],
                        "vpc_id": raw.get("VpcId"),
                        "subnet_id": raw["SubnetId"],
                        "connectivity_type": raw.get("ConnectivityType", "public"),
                        "allocation_ids": [a["AllocationId"] for a in addresses],
                        "public_ips": [a.get("PublicIp", "") for a in addresses],
                        "network_interface_ids": [
                            a["NetworkInterfaceId"]
                            for a in addresses
                            if a.get("NetworkInterfaceId")
                        ],
                        "tags": tag_dict(raw.get("Tags")),
                    }
                )
        allocations = [a for n in nats for a in n["allocation_ids"]]
        eip_tags = {}
        if allocations:
            addresses = self.clients.ec2.describe_addresses(
                Filters=[{"Name": "allocation-id", "Values": allocations}]
            )["Addresses"]
            eip_tags = {a["AllocationId"]: tag_dict(a.get("Tags")) for a in addresses}
        for nat in nats:
            nat["eip_tags"] = {a: eip_tags.get(a, {}) for a in nat["allocation_ids"]}
        routes = [
            {"vpc_id": part["vpc"].id, **route}
            for part in picture["vpcs"]
            for route in part["nat_routes"]
        ]
        vpcs = [v.id for v in inventory.vpcs]
        s3 = {}
        for vpc_id in vpcs:
            endpoint = self._s3_endpoint(vpc_id)
            s3[vpc_id] = (
                {"id": endpoint["VpcEndpointId"], "route_table_ids": endpoint["RouteTableIds"]}
                if endpoint and not self._ours(endpoint)
                else None
            )
        app_sgs = {}
        for vpc_id in sorted({m["vpc_id"] for m in picture["moves"]}):
            group = survey.app_security_group(vpc_id)
            app_sgs[vpc_id] = group["GroupId"] if group and not self._ours(group) else None
        cidr_of = {s.id: s.cidr for s in inventory.subnets}
        private_cidrs = {
            part["vpc"].id: sorted(cidr_of[s] for s in part["private_subnets"])
            for part in picture["vpcs"]
        }
        public_cidrs = {
            m["arn"]: sorted(cidr_of[s] for s in m["subnets"] if s in cidr_of)
            for m in picture["moves"]
        }
        data_subnets = (
            data_acl.data_store_subnets(self.clients, inventory) if picture["moves"] else {}
        )
        acl_entries: list[dict[str, Any]] = []
        for vpc_id in sorted({m["vpc_id"] for m in picture["moves"]}):
            entries, problems = data_acl.needed_entries(
                self.clients,
                data_subnets,
                private_cidrs.get(vpc_id, []),
                sorted(
                    {
                        c
                        for m in picture["moves"]
                        if m["vpc_id"] == vpc_id
                        for c in public_cidrs[m["arn"]]
                    }
                ),
            )
            acl_entries += entries
            picture["blockers"] += problems
        return NatRemovalObservation(
            inventory=inventory,
            nat_gateways=nats,
            nat_routes=routes,
            left_alone=[n for part in picture["vpcs"] for n in part["left_alone"]],
            moves=picture["moves"],
            blockers=picture["blockers"],
            accepted=picture["accepted"],
            data_store_groups=(
                data_access.data_store_groups(self.clients, inventory) if picture["moves"] else {}
            ),
            data_store_acl_entries=acl_entries,
            private_cidrs=private_cidrs,
            public_cidrs=public_cidrs,
            route_tables={v.id: sorted(t.id for t in v.route_tables) for v in inventory.vpcs},
            s3_endpoints=s3,
            app_security_groups=app_sgs,
        )

    def plan(self, obs: Observation) -> Change | None:
        """The whole removal, or None when no NAT gateway of the environment is left. With
        blockers it is still a Change, so `plan` shows it, but lifecycle refuses to apply it."""
        assert isinstance(obs, NatRemovalObservation)
        if not obs.nat_gateways and not obs.nat_routes:
            return None
        moved = {(m["cluster"], m["name"]): m for m in obs.moves}
        before_services = [
            {
                "cluster": s.cluster,
                "name": s.name,
                "arn": s.arn,
                "subnets": s.subnets,
                "security_groups": s.security_groups,
                "assign_public_ip": s.assign_public_ip,
            }
            for s in obs.inventory.services
            if (s.cluster, s.name) in moved
        ]
        removed = {n["id"] for n in obs.nat_gateways}
        after_inventory = obs.inventory.model_copy(deep=True)
        for vpc in after_inventory.vpcs:
            vpc.nat_gateways = [n for n in vpc.nat_gateways if n.id not in removed]
        for service in after_inventory.services:
            move = moved.get((service.cluster, service.name))
            if move:
                service.subnets = move["subnets"]
                service.assign_public_ip = True
        delta = self.ctx.cost_delta(obs.inventory, after_inventory)
        app_sg = f"{self._env}-app-public"
        s3 = s3_service(self.ctx.config.aws.region)
        actions = [
            f"ec2: let {guards} ({group}) admit the app's security group as it admits the "
            f"private subnets"
            for group, guards in sorted(obs.data_store_groups.items())
        ]
        actions += [f"ec2: add to {data_acl.describe(e)}" for e in obs.data_store_acl_entries]
        actions += [
            f"ecs: move {m['cluster']}/{m['name']} to {', '.join(m['subnets'])} with "
            "assignPublicIp ENABLED, security groups "
            f"{', '.join(m['security_groups']) if m['security_groups'] else app_sg + ' (ALB only)'}"
            ", rolling replacement"
            for m in obs.moves
        ]
        actions += [
            f"ec2: create S3 gateway endpoint {s3} in {vpc_id} "
            f"on {', '.join(obs.route_tables[vpc_id])}"
            for vpc_id, endpoint in obs.s3_endpoints.items()
            if endpoint is None
        ]
        actions += [
            f"ec2: delete route {r['destination']} -> {r['nat_gateway_id']} "
            f"from {r['route_table_id']}"
            for r in obs.nat_routes
        ]
        actions += [f"ec2: delete NAT gateway {n['id']}" for n in obs.nat_gateways]
        irreversible = [
            f"Elastic IP {ip} ({allocation}) of NAT gateway {n['id']}: released for good; "
            "egress leaves from other addresses, so partners' allow-lists and aws:SourceIp "
            "bucket policies naming it stop matching, and rollback allocates a new one"
            for n in obs.nat_gateways
            for allocation, ip in zip(n["allocation_ids"], n["public_ips"], strict=False)
        ]
        actions += [
            f"ec2: release Elastic IP {ip} ({allocation}) - IRREVERSIBLE"
            for n in obs.nat_gateways
            for allocation, ip in zip(n["allocation_ids"], n["public_ips"], strict=False)
        ]
        actions += [f"leave NAT gateway {n['id']} alone: {n['why']}" for n in obs.left_alone]
        actions += [f"accepted egress loss (nat.accept_egress_loss): {a}" for a in obs.accepted]
        return self.change(
            f"remove {len(obs.nat_gateways)} NAT gateways after moving {len(obs.moves)} ECS "
            "services to public subnets",
            actions,
            delta,
            reversibility=Reversibility(
                restart_needed=True,
                rollback_possible=True,
                expected_disruption="rolling replacement of tasks; no downtime behind the ALB; "
                "egress from new public IPs",
                irreversible=irreversible,
            ),
            before={
                "vpcs": sorted(obs.route_tables),
                "nat_gateways": obs.nat_gateways,
                "nat_routes": obs.nat_routes,
                "services": before_services,
                "s3_endpoints": obs.s3_endpoints,
                "app_security_groups": obs.app_security_groups,
                "note": "released Elastic IPs cannot be recovered: rollback allocates new ones",
            },
            desired={
                "services": obs.moves,
                "s3_endpoint_service": s3,
                "app_security_group_name": app_sg,
                "data_store_groups": obs.data_store_groups,
                "data_store_acl_entries": obs.data_store_acl_entries,
                "private_cidrs": obs.private_cidrs,
                "public_cidrs": obs.public_cidrs,
            },
            blockers=obs.blockers,
        )

    # ------------------------------------------------------------------ apply

    def apply(self, change: Change) -> dict[str, Any]:
        """(a) data stores admit the app's group, services move (b) S3 endpoint (c) routes
        (d) NAT gateways (e) Elastic IPs."""
        before, desired = change.before, change.desired
        app_sgs: dict[str, str] = {}
        admitted: list[dict[str, Any]] = []
        acl_entries = self._admit_acl_entries(desired.get("data_store_acl_entries", []))
        services = []
        for move in desired["services"]:
            groups = move["security_groups"]
            if not groups:
                vpc_id = move["vpc_id"]
                app_sgs[vpc_id] = self._ensure_app_sg(
                    vpc_id,
                    move["alb_security_groups"],
                    move["container_ports"],
                    app_sgs.get(vpc_id),
                )
                groups = [app_sgs[vpc_id]]
            self.progress(app_security_groups=app_sgs)
            for group in sorted(groups):
                for rule in data_access.needed_rules(
                    self.clients,
                    desired.get("data_store_groups", {}),
                    desired.get("private_cidrs", {}).get(move["vpc_id"], []),
                    desired.get("public_cidrs", {}).get(move["arn"], []),
                    group,
                ):
                    data_access.admit(self.clients, rule)
                    admitted.append(rule)
                    self.progress(data_store_rules=admitted)
                    self._info("nat.data_store_admitted", rule["group_id"], rule=rule)
            self._set_network(move["cluster"], move["name"], move["subnets"], groups, True)
            services.append({**move, "security_groups": sorted(groups)})
        s3 = {}
        for vpc_id in before["vpcs"]:
            s3[vpc_id] = self._ensure_s3_endpoint(vpc_id)
            self.progress(s3_endpoints=s3)
        deleted_routes = self._delete_nat_routes(before)
        nat_ids = [n["id"] for n in before["nat_gateways"]]
        self._delete_nats(nat_ids)
        released, kept = self._release_addresses(before["nat_gateways"])
        return {
            "services": services,
            "s3_endpoints": s3,
            "app_security_groups": app_sgs,
            "data_store_rules": admitted,
            "data_store_acl_entries": acl_entries,
            "deleted_routes": deleted_routes,
            "deleted_nat_gateways": nat_ids,
            "released_allocation_ids": released,
            "kept_allocation_ids": kept,
        }

    def _admit_acl_entries(self, planned: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Let the moved apps' public CIDRs through the data stores' subnet ACLs as the private
        ones are, before anything moves: exactly the entries planned (and approved), each
        journaled as soon as it exists."""
        added: list[dict[str, Any]] = []
        for entry in planned:
            try:
                data_acl.admit(self.clients, entry)
            except AwsCallError as exc:
                if exc.code != "NetworkAclEntryAlreadyExists":
                    raise
                raise StepRefused(
                    f"{self._env}: {self.id}: network ACL {entry['network_acl_id']} rule "
                    f"{entry['rule_number']} was taken since the plan; plan again"
                ) from None
            added.append(entry)
            self.progress(data_store_acl_entries=added)
            self._info("nat.data_store_acl_entry_added", entry["network_acl_id"], entry=entry)
        return added

    def _ensure_app_sg(
        self, vpc_id: str, sources: list[str], ports: list[int], known: str | None
    ) -> str:
        """`{env}-app-public`: admits the ALB's groups on the container ports, nothing else."""
        ec2 = self.clients.ec2
        name = f"{self._env}-app-public"
        existing = None if known else NetworkSurvey(self).app_security_group(vpc_id)
        group_id = known or (existing["GroupId"] if existing else None)
        if group_id is None:
            group_id = ec2.create_security_group(
                GroupName=name,
                Description=f"{self._env} app tasks in public subnets: container port from the ALB",
                VpcId=vpc_id,
                TagSpecifications=[
                    {"ResourceType": "security-group", "Tags": self._our_tags(name)}
                ],
            )["GroupId"]
            self._info("nat.security_group_created", group_id, vpc=vpc_id, name=name)
        group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        have = {
            (perm.get("FromPort"), perm.get("ToPort"), pair.get("GroupId"))
            for perm in group.get("IpPermissions", [])
            if perm.get("IpProtocol") == "tcp"
            for pair in perm.get("UserIdGroupPairs", [])
        }
        missing = [
            (port, source)
            for port in ports
            for source in sources
            if (port, port, source) not in have
        ]
        if missing:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "UserIdGroupPairs": [{"GroupId": source, "Description": "from the ALB"}],
                    }
                    for port, source in missing
                ],
            )
            self._info("nat.security_group_ingress", group_id, admitted=missing)
        return group_id

    def _set_network(
        self, cluster: str, name: str, subnets: list[str], groups: list[str], public: bool
    ) -> None:
        """Point the service at `subnets`/`groups` (rolling replacement), then wait stable."""
        resource = f"{cluster}/{name}"
        svc = self._service(cluster, name)
        if self._network(svc) != (sorted(subnets), sorted(groups), public):
            self.clients.ecs.update_service(
                cluster=cluster,
                service=name,
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": sorted(subnets),
                        "securityGroups": sorted(groups),
                        "assignPublicIp": "ENABLED" if public else "DISABLED",
                    }
                },
                forceNewDeployment=True,
            )
            self._info(
                "nat.service_moved", resource, subnets=subnets, security_groups=groups,
                assign_public_ip=public,
            )  # fmt: skip
        self._wait_stable(cluster, name)

    def _wait_stable(self, cluster: str, name: str) -> None:
        """ECS's own definition of stable: one deployment, running == desired."""

        def stable(svc: dict[str, Any]) -> bool:
            failed = [d for d in svc.get("deployments", []) if d.get("rolloutState") == "FAILED"]
            if failed:
                raise PhasegateError(
                    f"{self._env}: ECS service {cluster}/{name}: deployment {failed[0]['id']} "
                    f"failed: {failed[0].get('rolloutStateReason', '')}"
                )
            return (
                len(svc.get("deployments", [])) <= 1 and svc["runningCount"] == svc["desiredCount"]
            )

        self.ctx.wait(
            f"ECS service {cluster}/{name} stable (running == desired)",
            lambda: self._service(cluster, name),
            stable,
            kind="ecs_deploy",
        )

    def _ensure_s3_endpoint(self, vpc_id: str) -> str:
        """The VPC's S3 gateway endpoint on all its route tables, made if missing."""
        ec2 = self.clients.ec2
        tables = sorted(
            t["RouteTableId"]
            for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
                "RouteTables"
            ]
        )
        endpoint = self._s3_endpoint(vpc_id)
        if endpoint:
            missing = sorted(set(tables) - set(endpoint.get("RouteTableIds", [])))
            if missing:
                ec2.modify_vpc_endpoint(
                    VpcEndpointId=endpoint["VpcEndpointId"], AddRouteTableIds=missing
                )
                self._info("nat.s3_endpoint_extended", endpoint["VpcEndpointId"], added=missing)
            return endpoint["VpcEndpointId"]
        service = s3_service(self.ctx.config.aws.region)
        endpoint_id = ec2.create_vpc_endpoint(
            VpcEndpointType="Gateway",
            VpcId=vpc_id,
            ServiceName=service,
            RouteTableIds=tables,
            ClientToken=token(self._env, self.id, vpc_id, service),
            TagSpecifications=[
                {"ResourceType": "vpc-endpoint", "Tags": self._our_tags(f"{self._env}-s3")}
            ],
        )["VpcEndpoint"]["VpcEndpointId"]
        self._info("nat.s3_endpoint_created", endpoint_id, vpc=vpc_id, route_tables=tables)
        return endpoint_id

    def _delete_nat_routes(self, before: dict[str, Any]) -> list[dict[str, Any]]:
        """Every recorded route through a removed NAT gateway, whatever its destination."""
        nat_ids = {n["id"] for n in before["nat_gateways"]} | {
            r["nat_gateway_id"] for r in before["nat_routes"]
        }
        deleted = []
        for route in before["nat_routes"]:
            current = current_route(self.clients, route)
            if current is None or current.get("NatGatewayId") not in nat_ids:
                continue  # already gone, or changed by hand to something that is not ours
            delete_route(self.clients, route)
            self._info(
                "nat.route_deleted", route["route_table_id"], destination=route["destination"],
                target=current["NatGatewayId"],
            )  # fmt: skip
            deleted.append(route)
        return deleted

    def _delete_nats(self, nat_ids: list[str]) -> None:
        if not nat_ids:
            return
        for nat in self._nats(nat_gateway_id=nat_ids):
            if nat["State"] in LIVE_NAT_STATES:
                self.clients.ec2.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"])
                self._info("nat.gateway_deleting", nat["NatGatewayId"])
        self.ctx.wait(
            f"NAT gateways {', '.join(nat_ids)} deleted",
            lambda: self._nats(nat_gateway_id=nat_ids),
            lambda nats: all(n["State"] in GONE_NAT_STATES for n in nats),
            kind="nat_delete",
        )
        self._info("nat.gateways_deleted", ", ".join(nat_ids))

    def _release_addresses(self, nats: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
        """Release each gateway's EIP, only once no live gateway holds it (AWS would refuse)."""
        ec2 = self.clients.ec2
        allocations = [a for n in nats for a in n["allocation_ids"]]
        if not allocations:
            return [], {}
        ours = {eni for n in nats for eni in n["network_interface_ids"]}
        holders = {
            a["AllocationId"]: nat["NatGatewayId"]
            for nat in self._nats(state=["pending", "available", "deleting"])
            for a in nat.get("NatGatewayAddresses", [])
            if a.get("AllocationId")  # a private NAT gateway holds no Elastic IP
        }
        released, kept = [], {}
        addresses = ec2.describe_addresses(
            Filters=[{"Name": "allocation-id", "Values": allocations}]
        )["Addresses"]
        for address in addresses:
            allocation = address["AllocationId"]
            if allocation in holders:
                raise PhasegateError(
                    f"{self._env}: Elastic IP {allocation} is still held by NAT gateway "
                    f"{holders[allocation]}; AWS refuses to release it"
                )
            eni = address.get("NetworkInterfaceId")
            if address.get("AssociationId") and eni and eni not in ours:
                kept[allocation] = f"associated with {eni}, which is not a removed NAT gateway"
                self._warn("nat.address_kept", allocation, reason=kept[allocation])
                continue
            ec2.release_address(AllocationId=allocation)
            self._info("nat.address_released", allocation, public_ip=address.get("PublicIp"))
            released.append(allocation)
        # Not found: released by an earlier attempt of this apply.
        released += [a for a in allocations if a not in released and a not in kept]
        return sorted(released), kept

    # ------------------------------------------------------------------ verify

    def verify(self, record: Record) -> None:
        """From AWS: no NAT left or routed to; if applied, endpoint, services and EIPs too.

        Settling while gateways are still deleting or a service's tasks are being replaced;
        drifted (with the diff) when a NAT gateway or a route to one is back, or a service
        left the public subnets.
        """
        inventory = self.ctx.inventory()
        diff: dict[str, Any] = {}
        busy: list[str] = []
        survey = NetworkSurvey(self)
        for vpc in inventory.vpcs:
            removable, _ = survey.nat_gateways(vpc)
            for nat in removable:
                diff[f"nat_gateway.{nat['NatGatewayId']}"] = diff_entry("absent", nat["State"])
            deleting = describe_nats(self.clients, vpc_id=[vpc.id], state=["deleting"])
            busy += [f"NAT gateway {n['NatGatewayId']} is deleting" for n in deleting]
            tables = describe_route_tables(self.clients, vpc.id)
            for route in nat_routes(tables, {n["NatGatewayId"] for n in removable}):
                where = f"route.{route['route_table_id']}.{route['destination']}"
                diff[where] = diff_entry("absent", route["nat_gateway_id"])
        if record.change is not None:
            for rule in record.after.get("data_store_rules", []):
                if not data_access.rule_present(self.clients, rule):
                    where = f"data_store_rule.{rule['group_id']}.{rule['source_group']}"
                    diff[where] = diff_entry("present", "absent")
            for entry in record.after.get("data_store_acl_entries", []):
                if not data_acl.entry_present(self.clients, entry):
                    where = f"network_acl_entry.{entry['network_acl_id']}.{entry['rule_number']}"
                    diff[where] = diff_entry(entry["cidr"], "absent")
            for vpc_id in record.before.get("vpcs", []):
                if self._s3_endpoint(vpc_id) is None:
                    diff[f"s3_endpoint.{vpc_id}"] = diff_entry("present", "absent")
            released = record.after.get("released_allocation_ids", [])
            if released:
                left = self.clients.ec2.describe_addresses(
                    Filters=[{"Name": "allocation-id", "Values": released}]
                )["Addresses"]
                for address in left:
                    diff[f"elastic_ip.{address['AllocationId']}"] = diff_entry(
                        "released", "allocated"
                    )
            public = {s.id for s in inventory.subnets if s.public}
            found = {(s.cluster, s.name): s for s in inventory.services}
            for move in record.change.desired.get("services", []):
                label = f"{move['cluster']}/{move['name']}"
                svc = found.get((move["cluster"], move["name"]))
                if svc is None:
                    diff[f"service.{label}"] = diff_entry("present", "absent")
                    continue
                if not svc.subnets or not set(svc.subnets) <= public:
                    diff[f"service.{label}.subnets"] = diff_entry(
                        "public subnets", sorted(set(svc.subnets) - public)
                    )
                if not svc.assign_public_ip:
                    diff[f"service.{label}.assign_public_ip"] = diff_entry("ENABLED", "DISABLED")
                if svc.running != svc.desired:
                    busy.append(f"ECS service {label} runs {svc.running} of {svc.desired} tasks")
        if diff:
            raise VerificationFailed.of(f"{self._env}: {self.id}", diff)
        if busy:
            raise Settling(f"{self._env}: {self.id}: " + "; ".join(busy))

    # ------------------------------------------------------------------ rollback

    def rollback(self, record: Record) -> None:
        """NATs (new EIPs) in the same subnets, routes to them, services back, our extras gone."""
        if record.change is None:
            return
        before, after = record.before, record.after
        nats = before["nat_gateways"]
        self._wait_deleted([n["id"] for n in nats])  # a killed apply may have left some deleting
        new = {nat["id"]: self._restore_nat(nat) for nat in nats}
        if new:
            ids = sorted(new.values())
            waited = self.ctx.wait(
                f"NAT gateways {', '.join(ids)} available",
                lambda: self._nats(nat_gateway_id=ids),
                lambda found: (
                    len(found) == len(ids)
                    and all(n["State"] in ("available", "failed") for n in found)
                ),
                kind="nat_create",
            )
            failed = [n for n in waited if n["State"] == "failed"]
            if failed:
                raise PhasegateError(
                    f"{self._env}: NAT gateway {failed[0]['NatGatewayId']} failed: "
                    f"{failed[0].get('FailureMessage', 'no reason given')}"
                )
        for route in before["nat_routes"]:
            target = new.get(route["nat_gateway_id"])
            if target is None:
                self._warn(
                    "nat.route_not_restored", route["route_table_id"],
                    reason=f"{route['nat_gateway_id']} was not a live NAT gateway",
                )  # fmt: skip
                continue
            if point_route(self.clients, route, target):
                self._info(
                    "nat.route_restored", route["route_table_id"],
                    destination=route["destination"], target=target,
                )  # fmt: skip
        for svc in before["services"]:
            self._set_network(
                svc["cluster"], svc["name"], svc["subnets"], svc["security_groups"],
                svc["assign_public_ip"],
            )  # fmt: skip
        for vpc_id, prior in before["s3_endpoints"].items():
            self._restore_s3_endpoint(vpc_id, prior, after.get("s3_endpoints", {}).get(vpc_id))
        for rule in after.get("data_store_rules", []):
            if data_access.revoke(self.clients, rule):
                self._info("nat.data_store_revoked", rule["group_id"], rule=rule)
        for entry in after.get("data_store_acl_entries", []):
            if data_acl.revoke(self.clients, entry):
                self._info("nat.data_store_acl_entry_deleted", entry["network_acl_id"], entry=entry)
        for vpc_id, prior in before.get("app_security_groups", {}).items():
            made = after.get("app_security_groups", {}).get(vpc_id)
            if prior is None and made:
                self._delete_security_group(made)

    def _restore_nat(self, nat: dict[str, Any]) -> str:
        """A NAT gateway in `nat`'s subnet: an existing live one, else a new one with a new EIP."""
        ec2 = self.clients.ec2
        live = self._nats(subnet_id=[nat["subnet_id"]], state=LIVE_NAT_STATES)
        live.sort(key=lambda n: tag_dict(n.get("Tags")).get(REPLACES_TAG) != nat["id"])
        if live:
            return live[0]["NatGatewayId"]
        tags = {k: v for k, v in nat["tags"].items() if not k.startswith("aws:")}
        params: dict[str, Any] = {"SubnetId": nat["subnet_id"]}
        if nat["connectivity_type"] == "public" and nat["allocation_ids"]:
            old = nat["allocation_ids"][0]
            allocation = self._restore_address(nat["id"], nat["eip_tags"].get(old, {}), old)
            params["AllocationId"] = allocation
        else:
            params["ConnectivityType"] = nat["connectivity_type"]
            allocation = "private"
        nat_id = ec2.create_nat_gateway(
            **params,
            ClientToken=token(self._env, self.id, nat["id"], allocation),
            TagSpecifications=[
                {"ResourceType": "natgateway", "Tags": tag_list({**tags, REPLACES_TAG: nat["id"]})}
            ],
        )["NatGateway"]["NatGatewayId"]
        self._info("nat.gateway_created", nat_id, subnet=nat["subnet_id"], replaces=nat["id"])
        return nat_id

    def _wait_deleted(self, nat_ids: list[str]) -> None:
        """Until none of `nat_ids` is deleting: their Elastic IPs are free only then."""
        if not nat_ids:
            return
        self.ctx.wait(
            f"NAT gateways {', '.join(nat_ids)} done deleting",
            lambda: self._nats(nat_gateway_id=nat_ids),
            lambda nats: all(n["State"] != "deleting" for n in nats),
            kind="nat_delete",
        )

    def _restore_address(self, nat_id: str, tags: dict[str, str], original: str) -> str:
        """The EIP for the gateway that replaces `nat_id`: its own, if a half-applied removal
        never released it (same public IP), else one allocated for it earlier, else a new one."""
        ec2 = self.clients.ec2
        kept = ec2.describe_addresses(Filters=[{"Name": "allocation-id", "Values": [original]}])[
            "Addresses"
        ]
        if kept and not kept[0].get("AssociationId"):
            return original
        free = [
            a
            for a in ec2.describe_addresses(
                Filters=[{"Name": f"tag:{REPLACES_TAG}", "Values": [nat_id]}]
            )["Addresses"]
            if not a.get("AssociationId")
        ]
        if free:
            return free[0]["AllocationId"]
        tags = {k: v for k, v in tags.items() if not k.startswith("aws:")}
        allocation = ec2.allocate_address(
            Domain="vpc",
            TagSpecifications=[
                {"ResourceType": "elastic-ip", "Tags": tag_list({**tags, REPLACES_TAG: nat_id})}
            ],
        )["AllocationId"]
        self._info("nat.address_allocated", allocation, replaces=nat_id)
        return allocation

    def _restore_s3_endpoint(
        self, vpc_id: str, prior: dict[str, Any] | None, made: str | None
    ) -> None:
        """Delete the endpoint if we made it; else take back the route tables we added."""
        ec2 = self.clients.ec2
        endpoint = self._s3_endpoint(vpc_id)
        if endpoint is None:
            return
        if prior is None:
            if endpoint["VpcEndpointId"] != made and not self._ours(endpoint):
                self._warn("nat.s3_endpoint_kept", endpoint["VpcEndpointId"], reason="not ours")
                return
            ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"]])
            self._info("nat.s3_endpoint_deleted", endpoint["VpcEndpointId"])
            return
        added = sorted(set(endpoint.get("RouteTableIds", [])) - set(prior["route_table_ids"]))
        if added:
            ec2.modify_vpc_endpoint(VpcEndpointId=prior["id"], RemoveRouteTableIds=added)
            self._info("nat.s3_endpoint_narrowed", prior["id"], removed=added)

    def _delete_security_group(self, group_id: str) -> None:
        """Delete a group we made, once the replaced tasks' interfaces have let go of it."""
        ec2 = self.clients.ec2
        if not ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group_id]}])[
            "SecurityGroups"
        ]:
            return

        delete_security_group(self.ctx, group_id)
        self._info("nat.security_group_deleted", group_id)

    def verify_rollback(self, record: Record) -> None:
        """From AWS: NATs available in the original subnets, routed to, services back."""
        if record.change is None:
            return
        before = record.before
        gaps = []
        live = {}
        for nat in before["nat_gateways"]:
            found = self._nats(subnet_id=[nat["subnet_id"]], state=["available"])
            if found:
                live[nat["id"]] = found[0]["NatGatewayId"]
            else:
                gaps.append(f"no available NAT gateway in {nat['subnet_id']} (was {nat['id']})")
        for route in before["nat_routes"]:
            current = current_route(self.clients, route)
            want = live.get(route["nat_gateway_id"])
            if want and (current is None or current.get("NatGatewayId") != want):
                gaps.append(
                    f"route table {route['route_table_id']} does not send "
                    f"{route['destination']} to {want}"
                )
        for rule in record.after.get("data_store_rules", []):
            if data_access.rule_present(self.clients, rule):
                gaps.append(f"{rule['group_id']} still admits {rule['source_group']}")
        for entry in record.after.get("data_store_acl_entries", []):
            if data_acl.entry_present(self.clients, entry):
                gaps.append(f"still there: {data_acl.describe(entry)}")
        for svc in before["services"]:
            current = self._network(self._service(svc["cluster"], svc["name"]))
            wanted = (
                sorted(svc["subnets"]),
                sorted(svc["security_groups"]),
                svc["assign_public_ip"],
            )
            if current != wanted:
                gaps.append(f"ECS service {svc['cluster']}/{svc['name']} network is {current}")
        if gaps:
            raise VerificationFailed(f"{self._env}: {self.id} rollback: " + "; ".join(gaps))
