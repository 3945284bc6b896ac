"""`monitoring.enable`: alert topic, dashboard, alarms, budget and error tracking per environment.

Phase 1 makes the environment cheaper; phase 2 makes it watched, so that a problem (or a bill)
reaches a person before a customer notices:

- an SNS topic `ENV-alerts` with the config's email and HTTPS subscriptions;
- a CloudWatch dashboard `ENV-overview` with a widget per component (tasks.monitoring_plan);
- alarms on ALB 5xx (target and ELB), p99 latency, unhealthy hosts, compute CPU, RDS CPU,
  free storage and connections, Redis memory and evictions, scaling at max capacity and log
  errors, each with the topic as alarm and OK action, tagged with the environment's discovery
  tags (so the health gate after the phase watches them) and `phasegate:created-by`;
- an AWS Budget `ENV-monthly` on the cost carrying the environment's cost-allocation tag, with
  notifications to the topic at 80% forecast and 100% actual;
- a CloudWatch Logs metric filter on the service's log group counting ERROR lines and 5xx,
  with its alarm.

Every part is compared with AWS before it is written, so a re-run writes nothing. The Record
keeps what each part was before (absent, mostly), and rollback deletes what the step made and
puts back what it replaced.
"""

import json
from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import DISCOVERY_IAM_ACTIONS, Discovery
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
)
from tasks.connection_limits import max_connections
from tasks.monitoring_plan import (
    BUDGET_NOTIFICATIONS,
    ERROR_PATTERN,
    Watched,
    alarms,
    budget_filter,
    dashboard_body,
    names,
)

PARTS = ("topic", "subscriptions", "dashboard", "alarms", "budget", "metric_filter")


def holds(part: str, wanted: Any, found: Any) -> bool:
    """Whether AWS's `found` is what `wanted` asks. Subscriptions are "at least these": an
    email subscription nobody confirmed cannot be removed (SNS drops it after three days),
    and someone else's subscription to the topic is not phasegate's to judge."""
    if part == "subscriptions":
        return all(s in (found or []) for s in wanted or [])
    return bool(wanted == found)


class MonitoringObservation(Observation):
    """What monitoring watches, and each part of monitoring as AWS shows it now."""

    watched: Watched
    account: str
    partition: str  # "aws", "aws-cn", "aws-us-gov": the topic ARN's first part
    current: dict[str, Any]


class MonitoringEnable(Step):
    """SNS topic, dashboard, alarms, budget and log metric filter for the environment."""

    id = "monitoring.enable"
    phase = 2
    title = "Monitoring: alert topic, dashboard, alarms, budget, error tracking"
    after = ("scaling.enable",)  # the at-max alarm uses the bounds scaling.enable sets
    iam_actions = (
        *DISCOVERY_IAM_ACTIONS,  # the budget's default amount prices the whole inventory
        "sts:GetCallerIdentity",
        "sns:ListTopics",
        "sns:CreateTopic",
        "sns:TagResource",
        "sns:ListSubscriptionsByTopic",
        "sns:Subscribe",
        "sns:Unsubscribe",
        "sns:DeleteTopic",
        "cloudwatch:GetDashboard",
        "cloudwatch:PutDashboard",
        "cloudwatch:DeleteDashboards",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DeleteAlarms",
        "cloudwatch:ListTagsForResource",
        "budgets:DescribeBudget",
        "budgets:CreateBudget",
        "budgets:UpdateBudget",
        "budgets:DeleteBudget",
        "budgets:DescribeNotificationsForBudget",
        "budgets:DescribeSubscribersForNotification",
        "logs:DescribeMetricFilters",
        "logs:PutMetricFilter",
        "logs:DeleteMetricFilter",
    )

    def target(self) -> dict[str, Any]:
        config = self.ctx.config
        return {
            "compute": config.targets.compute,
            "monitoring": config.monitoring.model_dump(),
            "scaling": config.scaling.model_dump(),
            "memory_per_connection_mib": config.database.memory_per_connection_mib,
        }

    @property
    def names(self) -> dict[str, str]:
        return names(self.ctx.config.name)

    def terraform_decisions(self) -> dict[str, Any]:
        """terraform/'s monitoring module on, with the config's subscribers, budget and
        thresholds; the connections alarm at its share of max_connections for the class phase
        1 leaves. The module builds the same names, alarms and dashboard from the stack."""
        config = self.ctx.config
        monitoring, thresholds = config.monitoring, config.monitoring.thresholds
        limit = max_connections(
            config.targets.rds_instance_class, config.database.memory_per_connection_mib
        )
        return {
            "enable_monitoring": True,
            "alert_emails": list(monitoring.emails),
            "alert_https_endpoints": list(monitoring.https_endpoints),
            "monthly_budget_usd": self._budget_amount(),
            "budget_cost_filter": budget_filter(config),
            "alarm_thresholds": thresholds.model_dump(),
            "alarm_db_connections_threshold": round(
                limit * thresholds.rds_connections_percent / 100
            ),
            "monitoring_log_group": monitoring.log_group or "",
        }

    def _tags(self) -> list[dict[str, str]]:
        tags = {**self.ctx.config.discovery.tags, CREATED_BY_TAG: self.id}
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    # -- reading -------------------------------------------------------------------------

    def _watched(self) -> Watched:
        config = self.ctx.config
        discovery = Discovery(config, self.clients)
        lbs = discovery.load_balancers()
        if not lbs or not lbs[0].target_groups:
            raise StepRefused(f"{config.name}: {self.id}: no load balancer with a target group")
        lb = lbs[0]
        services = discovery.services()
        if config.targets.compute == "ec2-asg-graviton":
            groups = discovery.autoscaling_groups()
            if len(groups) != 1:
                raise StepRefused(
                    f"{config.name}: {self.id}: expected one Auto Scaling group, found "
                    f"{', '.join(g.name for g in groups) or 'none'}"
                )
            compute = {"compute": "ec2", "autoscaling_group": groups[0].name,
                       "max_capacity": config.targets.asg_max}  # fmt: skip
            group_tgs = groups[0].target_groups
        else:
            if len(services) != 1:
                raise StepRefused(
                    f"{config.name}: {self.id}: expected one ECS service, found "
                    f"{', '.join(s.name for s in services) or 'none'}"
                )
            compute = {"compute": "ecs", "cluster": services[0].cluster,
                       "service": services[0].name,
                       "max_capacity": config.scaling.max_capacity}  # fmt: skip
            group_tgs = services[0].target_groups
        tg_arn = group_tgs[0] if group_tgs else lb.target_groups[0].arn
        return Watched(
            load_balancer=lb.arn.split(":loadbalancer/", 1)[1],
            target_group=tg_arn.split(":", 5)[5],
            databases={db.identifier: db.instance_class for db in discovery.databases()},
            cache_members=[m for c in discovery.caches() for m in c.member_clusters],
            log_group=config.monitoring.log_group or self._log_group(services),
            **compute,
        )

    def _log_group(self, services: list[Any]) -> str | None:
        """The awslogs group the service's containers write to, if any."""
        for service in services:
            task = self.clients.ecs.describe_task_definition(taskDefinition=service.task_definition)
            for container in task["taskDefinition"]["containerDefinitions"]:
                log = container.get("logConfiguration") or {}
                if log.get("logDriver") == "awslogs" and log.get("options", {}).get(
                    "awslogs-group"
                ):
                    return log["options"]["awslogs-group"]
        return None

    def _topic_arn(self) -> str | None:
        wanted = f":{self.names['topic']}"
        for page in self.clients.sns.get_paginator("list_topics").paginate():
            for topic in page["Topics"]:
                if topic["TopicArn"].endswith(wanted):
                    return topic["TopicArn"]
        return None

    def _subscriptions(self, topic: str | None) -> list[list[str]]:
        if topic is None:
            return []
        pages = self.clients.sns.get_paginator("list_subscriptions_by_topic").paginate(
            TopicArn=topic
        )
        return sorted(
            [s["Protocol"], s["Endpoint"]] for page in pages for s in page["Subscriptions"]
        )

    def _dashboard(self) -> str | None:
        try:
            body = self.clients.cloudwatch.get_dashboard(DashboardName=self.names["dashboard"])
        except AwsCallError as exc:
            if exc.code in ("ResourceNotFound", "ResourceNotFoundException"):
                return None
            raise
        return json.dumps(json.loads(body["DashboardBody"]), sort_keys=True)

    def _alarms(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        pages = self.clients.cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=f"{self.ctx.config.name}-", AlarmTypes=["MetricAlarm"]
        )
        for page in pages:
            for alarm in page["MetricAlarms"]:
                found[alarm["AlarmName"]] = {
                    "namespace": alarm.get("Namespace"),
                    "metric": alarm.get("MetricName"),
                    "stat": alarm.get("ExtendedStatistic") or alarm.get("Statistic"),
                    "dimensions": dict(
                        sorted((d["Name"], d["Value"]) for d in alarm.get("Dimensions", []))
                    ),
                    "threshold": float(alarm["Threshold"]),
                    "comparison": alarm["ComparisonOperator"],
                    "periods": alarm["EvaluationPeriods"],
                    "actions": sorted(set(alarm.get("AlarmActions", []))),
                    "ok_actions": sorted(set(alarm.get("OKActions", []))),
                }
        return found

    def _budget(self, account: str) -> dict[str, Any] | None:
        budgets = self.clients.budgets
        name = self.names["budget"]
        try:
            budget = budgets.describe_budget(AccountId=account, BudgetName=name)["Budget"]
        except AwsCallError as exc:
            if exc.code in ("NotFoundException",):
                return None
            raise
        notes = budgets.describe_notifications_for_budget(AccountId=account, BudgetName=name)
        notifications = []
        for note in notes["Notifications"]:
            subscribers = budgets.describe_subscribers_for_notification(
                AccountId=account, BudgetName=name, Notification=note
            )["Subscribers"]
            notifications.append(
                [
                    note["NotificationType"],
                    float(note["Threshold"]),
                    sorted(s["Address"] for s in subscribers),
                ]
            )
        return {
            "amount": round(float(budget["BudgetLimit"]["Amount"]), 2),
            "filter": budget.get("CostFilters", {}).get("TagKeyValue", []),
            "notifications": sorted(notifications),
        }

    def _metric_filter(self, log_group: str | None) -> dict[str, Any] | None:
        if log_group is None:
            return None
        try:
            found = self.clients.logs.describe_metric_filters(
                logGroupName=log_group, filterNamePrefix=self.names["metric_filter"]
            )["metricFilters"]
        except AwsCallError as exc:
            if exc.code == "ResourceNotFoundException":
                return None
            raise
        for f in found:
            if f["filterName"] == self.names["metric_filter"]:
                [transform] = f["metricTransformations"]
                return {
                    "log_group": log_group,
                    "pattern": f["filterPattern"],
                    "metric": transform["metricName"],
                    "namespace": transform["metricNamespace"],
                }
        return None

    def _current(self, watched: Watched, account: str) -> dict[str, Any]:
        topic = self._topic_arn()
        return {
            "topic": topic,
            "subscriptions": self._subscriptions(topic),
            "dashboard": self._dashboard(),
            "alarms": self._alarms(),
            "budget": self._budget(account),
            "metric_filter": self._metric_filter(watched.log_group),
        }

    def observe(self) -> MonitoringObservation:
        watched = self._watched()
        caller = self.clients.sts.get_caller_identity()
        account = caller["Account"]
        return MonitoringObservation(
            watched=watched,
            account=account,
            partition=caller["Arn"].split(":", 2)[1],
            current=self._current(watched, account),
        )

    # -- planning ------------------------------------------------------------------------

    def _budget_amount(self) -> float:
        """The configured budget, else the priced monthly total now plus the margin."""
        monitoring = self.ctx.config.monitoring
        if monitoring.monthly_budget_usd is not None:
            return round(monitoring.monthly_budget_usd, 2)
        total = self.ctx.monthly_cost(self.ctx.inventory())
        return round(total * (1 + monitoring.budget_margin_percent / 100), 2)

    def desired(self, obs: MonitoringObservation) -> dict[str, Any]:
        config = self.ctx.config
        region = config.aws.region
        topic = f"arn:{obs.partition}:sns:{region}:{obs.account}:{self.names['topic']}"
        periods = config.monitoring.thresholds.evaluation_minutes
        wanted_alarms = {
            name: {**alarm, "periods": periods, "actions": [topic], "ok_actions": [topic]}
            for name, alarm in alarms(config, obs.watched).items()
        }
        subscriptions = [["email", e] for e in config.monitoring.emails] + [
            ["https", u] for u in config.monitoring.https_endpoints
        ]
        log_group = obs.watched.log_group
        return {
            "topic": topic,
            "subscriptions": sorted(subscriptions),
            "dashboard": dashboard_body(config, obs.watched),
            "alarms": wanted_alarms,
            "budget": {
                "amount": self._budget_amount(),
                "filter": [budget_filter(config)],
                "notifications": sorted([k, p, [topic]] for k, p in BUDGET_NOTIFICATIONS),
            },
            "metric_filter": None
            if log_group is None
            else {
                "log_group": log_group,
                "pattern": ERROR_PATTERN,
                "metric": self.names["metric"],
                "namespace": self.names["metric_namespace"],
            },
        }

    def _monthly(self, state: dict[str, Any]) -> float:
        """What `state`'s monitoring costs a month, from the price table."""
        if self.ctx.prices is None:
            return 0.0
        rates = self.ctx.prices.monitoring
        return (
            len(state.get("alarms") or {}) * rates.alarm_month.usd
            + (rates.dashboard_month.usd if state.get("dashboard") else 0.0)
            + (rates.custom_metric_month.usd if state.get("metric_filter") else 0.0)
            + (rates.budget_month.usd if state.get("budget") else 0.0)
        )

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, MonitoringObservation)
        desired = self.desired(obs)
        current = obs.current
        changed = [part for part in PARTS if not holds(part, desired[part], current.get(part))]
        extra = set(current["alarms"]) - set(desired["alarms"])
        if not changed:
            return None
        actions = []
        if "topic" in changed:
            actions.append(f"sns:CreateTopic {self.names['topic']}")
        for protocol, endpoint in desired["subscriptions"]:
            if [protocol, endpoint] not in current["subscriptions"]:
                actions.append(f"sns:Subscribe {protocol} {endpoint}")
        if "dashboard" in changed:
            actions.append(f"cloudwatch:PutDashboard {self.names['dashboard']}")
        put = [n for n, a in desired["alarms"].items() if current["alarms"].get(n) != a]
        if put:
            actions.append(
                f"cloudwatch:PutMetricAlarm {len(put)} alarm(s) to {self.names['topic']}: "
                + ", ".join(n.removeprefix(f"{self.ctx.config.name}-") for n in put)
            )
        if "budget" in changed:
            verb = "UpdateBudget" if current["budget"] else "CreateBudget"
            amount = desired["budget"]["amount"]
            actions.append(
                f"budgets:{verb} {self.names['budget']} ${amount:.2f} a month, "
                "notify at 80% forecast and 100% actual"
            )
        if "metric_filter" in changed and desired["metric_filter"]:
            actions.append(
                f"logs:PutMetricFilter {self.names['metric_filter']} on "
                f"{desired['metric_filter']['log_group']}"
            )
        delta = round(self._monthly(desired) - self._monthly(current), 2)
        return self.change(
            f"monitoring of {self.ctx.config.name}: {len(desired['alarms'])} alarms to topic "
            f"{self.names['topic']}, dashboard, ${desired['budget']['amount']:.2f} budget, "
            "error-log metric"
            + (f" (alarms named like ours but not ours kept: {sorted(extra)})" if extra else ""),
            actions,
            delta,
            reversibility=Reversibility(
                restart_needed=False,
                rollback_possible=True,
                expected_disruption="none; email subscriptions must be confirmed by their owner",
            ),
            before=current,
            desired=desired,
        )

    # -- changing ------------------------------------------------------------------------

    def apply(self, change: Change) -> dict[str, Any]:
        desired, before = change.desired, change.before
        obs = self.observe()  # the present: a resumed apply continues where it stopped
        current = obs.current
        if current["topic"] is None:
            created = self.clients.sns.create_topic(Name=self.names["topic"], Tags=self._tags())
            if created["TopicArn"] != desired["topic"]:
                raise StepRefused(
                    f"topic {created['TopicArn']} is not the planned {desired['topic']}"
                )
            self.progress(topic=desired["topic"])
        for protocol, endpoint in desired["subscriptions"]:
            if [protocol, endpoint] not in current["subscriptions"]:
                self.clients.sns.subscribe(
                    TopicArn=desired["topic"], Protocol=protocol, Endpoint=endpoint
                )
        self.progress(subscriptions=desired["subscriptions"])
        if current["dashboard"] != desired["dashboard"]:
            self.clients.cloudwatch.put_dashboard(
                DashboardName=self.names["dashboard"], DashboardBody=desired["dashboard"]
            )
            self.progress(dashboard=desired["dashboard"])
        for name, alarm in desired["alarms"].items():
            if current["alarms"].get(name) != alarm:
                self._put_alarm(name, alarm, tags=name not in before["alarms"])
                self.progress(alarms={name: alarm})
        if current["budget"] != desired["budget"]:
            self._put_budget(obs.account, desired["budget"], exists=current["budget"] is not None)
            self.progress(budget=desired["budget"])
        wanted = desired["metric_filter"]
        if wanted and current["metric_filter"] != wanted:
            self.clients.logs.put_metric_filter(
                logGroupName=wanted["log_group"],
                filterName=self.names["metric_filter"],
                filterPattern=wanted["pattern"],
                metricTransformations=[
                    {
                        "metricName": wanted["metric"],
                        "metricNamespace": wanted["namespace"],
                        "metricValue": "1",
                        "defaultValue": 0.0,
                    }
                ],
            )
            self.progress(metric_filter=wanted)
        return desired

    def _put_alarm(self, name: str, alarm: dict[str, Any], tags: bool) -> None:
        stat = alarm["stat"]
        statistic = {"ExtendedStatistic": stat} if stat.startswith("p") else {"Statistic": stat}
        self.clients.cloudwatch.put_metric_alarm(
            AlarmName=name,
            AlarmDescription=f"phasegate {self.id}: {alarm['metric']} of {self.ctx.config.name}",
            Namespace=alarm["namespace"],
            MetricName=alarm["metric"],
            Dimensions=[{"Name": k, "Value": v} for k, v in alarm["dimensions"].items()],
            Period=60,
            EvaluationPeriods=alarm["periods"],
            Threshold=alarm["threshold"],
            ComparisonOperator=alarm["comparison"],
            TreatMissingData="notBreaching",
            AlarmActions=alarm["actions"],
            OKActions=alarm["ok_actions"],
            **statistic,
            **({"Tags": self._tags()} if tags else {}),
        )

    def _put_budget(self, account: str, budget: dict[str, Any], exists: bool) -> None:
        spec = {
            "BudgetName": self.names["budget"],
            "BudgetLimit": {"Amount": f"{budget['amount']:.2f}", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
            "CostFilters": {"TagKeyValue": budget["filter"]},
        }
        if exists:
            self.clients.budgets.update_budget(AccountId=account, NewBudget=spec)
            return
        self.clients.budgets.create_budget(
            AccountId=account,
            Budget=spec,
            NotificationsWithSubscribers=[
                {
                    "Notification": {
                        "NotificationType": kind,
                        "ComparisonOperator": "GREATER_THAN",
                        "Threshold": percent,
                        "ThresholdType": "PERCENTAGE",
                    },
                    "Subscribers": [{"SubscriptionType": "SNS", "Address": a} for a in to],
                }
                for kind, percent, to in budget["notifications"]
            ],
            ResourceTags=self._tags(),
        )

    # -- proving -------------------------------------------------------------------------

    def verify(self, record: Record) -> None:
        """Every part reads back from AWS as recorded (or, unchanged, as the config wants)."""
        obs = self.observe()
        expected = record.after if record.change is not None else self.desired(obs)
        diff = {
            f"{self.ctx.config.name}.{part}": diff_entry(expected.get(part), obs.current[part])
            for part in PARTS
            if part in expected and not holds(part, expected[part], obs.current[part])
        }
        if diff:
            raise VerificationFailed.of(f"{self.ctx.config.name}: {self.id}", diff)

    def rollback(self, record: Record) -> None:
        """Delete what the step made, put back what it replaced."""
        before = record.change.before if record.change else record.before
        made = record.after
        cloudwatch = self.clients.cloudwatch
        ours = [name for name in made.get("alarms", {}) if name not in before.get("alarms", {})]
        if ours:
            cloudwatch.delete_alarms(AlarmNames=ours)
        for name, alarm in before.get("alarms", {}).items():
            if name in made.get("alarms", {}):
                self._put_alarm(name, alarm, tags=False)
        if made.get("dashboard"):
            if before.get("dashboard"):
                cloudwatch.put_dashboard(
                    DashboardName=self.names["dashboard"], DashboardBody=before["dashboard"]
                )
            else:
                cloudwatch.delete_dashboards(DashboardNames=[self.names["dashboard"]])
        account = self.clients.sts.get_caller_identity()["Account"]
        if made.get("budget") and before.get("budget") is None:
            try:
                self.clients.budgets.delete_budget(
                    AccountId=account, BudgetName=self.names["budget"]
                )
            except AwsCallError as exc:
                if exc.code != "NotFoundException":
                    raise
        elif made.get("budget"):
            self._put_budget(account, before["budget"], exists=True)
        if made.get("metric_filter") and before.get("metric_filter") is None:
            try:
                self.clients.logs.delete_metric_filter(
                    logGroupName=made["metric_filter"]["log_group"],
                    filterName=self.names["metric_filter"],
                )
            except AwsCallError as exc:
                if exc.code != "ResourceNotFoundException":
                    raise
        if made.get("topic") and before.get("topic") is None:
            self.clients.sns.delete_topic(TopicArn=made["topic"])  # its subscriptions go too

    def verify_rollback(self, record: Record) -> None:
        """AWS shows each part as it was before the step."""
        before = record.change.before if record.change else record.before
        now = self._current(self._watched(), self.clients.sts.get_caller_identity()["Account"])
        made = record.after
        wrong = [
            part for part in PARTS if part in made and part in before and now[part] != before[part]
        ]
        if wrong:
            raise VerificationFailed(
                f"{self.ctx.config.name}: {self.id}: after rollback "
                + "; ".join(f"{p} is {now[p]!r}, was {before[p]!r}" for p in wrong)
            )
