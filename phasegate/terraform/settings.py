"""The `terraform:` section of an environment's config: where its stack is and what its
variables are called.

With `executor: terraform` (or `executor: {via: terraform, ...}`) a step's change is made by
changing the stack's variables and applying a saved plan, never by calling AWS behind
Terraform's back. `variables` maps each migration decision to the name of the user's own
variable; a decision left out keeps terraform/'s name.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

DECISIONS = (
    "enable_nat_gateway",
    "enable_s3_endpoint",
    "service_subnets",
    "compute_mode",
    "ecs_service_enabled",
    "ec2_group_enabled",
    "cpu_architecture",
    "ec2_instance_type",
    "asg_min",
    "asg_max",
    "rds_instance_class",
    "redis_node_type",
    # phase 2
    "enable_autoscaling",
    "autoscaling_min_capacity",
    "autoscaling_max_capacity",
    "autoscaling_cpu_target_percent",
    "autoscaling_requests_per_target",
    "autoscaling_scale_in_cooldown_seconds",
    "autoscaling_scale_out_cooldown_seconds",
    "autoscaling_instance_warmup_seconds",
    "enable_db_tuning",
    "db_max_connections",
    "db_idle_in_transaction_session_timeout_ms",
    "db_tcp_keepalives_idle_seconds",
    "db_log_min_duration_statement_ms",
    "enable_monitoring",
    "alert_emails",
    "alert_https_endpoints",
    "monthly_budget_usd",
    "budget_cost_filter",
    "alarm_thresholds",
    "alarm_db_connections_threshold",
    "monitoring_log_group",
    # phase 3
    "enable_spot",
    "spot_fargate_base",
    "spot_fargate_weight",
    "spot_fargate_spot_weight",
    "spot_on_demand_base",
    "spot_instance_types",
    "enable_cdn",
    "cdn_static_paths",
    "cdn_price_class",
    "secondary_region",
    "enable_secondary_network",
    "secondary_vpc_cidr",
    "secondary_tags",
    "enable_secondary_alb",
    "enable_secondary_database",
    "enable_secondary_cache",
    "enable_secondary_compute",
    "enable_secondary_dns",
    "failover_zone_id",
    "failover_record_name",
    "failover_health_check_path",
)
"""Every migration decision a step can make through Terraform; terraform/variables.tf declares
each under this name."""


class TerraformSettings(BaseModel):
    """The environment's Terraform stack (used when the executor is terraform)."""

    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(default=None, description="the root module's directory")
    workspace: str = Field(default="default", min_length=1)
    var_file: Path | None = Field(default=None, description="passed as -var-file to every plan")
    binary: str | None = Field(
        default=None, description="terraform or tofu binary (a path or a name on PATH)"
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="migration decision -> the stack's variable name"
    )
    accept_drift: bool = Field(
        default=False, description="start a phase even when the stack plans changes before it"
    )

    @field_validator("variables")
    @classmethod
    def _known_decisions(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DECISIONS))
        if unknown:
            raise ValueError(
                f"unknown migration decision(s) {unknown}; known: {', '.join(DECISIONS)}"
            )
        return value

    def variable(self, decision: str) -> str:
        """The stack's name for `decision`."""
        return self.variables.get(decision, decision)
