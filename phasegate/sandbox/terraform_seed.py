"""`phasegate sandbox up --via terraform`: environments made by applying terraform/ with the
real hashicorp/aws provider, aimed at the sandbox, the way users' stacks are made.

Each environment gets its own working copy of terraform/ under PHASEGATE_HOME/sandbox/terraform/
NAME, plus one file the repository's stack does not have, `sandbox_override.tf` (Terraform
merges `*_override.tf` over the configuration): the provider's endpoints aimed at the sandbox,
and the S3 backend on the sandbox's own S3 (bucket phasegate-tfstate, workspace NAME, S3 native
state locking). Product code and terraform/ itself never know about the sandbox.

The app's multi-arch image is pushed to ECR first (CI's job on a real account); Terraform gets
its URI as `app_image`. Provider installation follows the user's Terraform CLI config.
The provider retries a call 3 times (a connection the busy local server dropped is retried;
a call moto lacks still fails within a minute instead of the default's many minutes).
"""

import json
import shutil
from pathlib import Path
from typing import Any

import structlog

from phasegate.aws import AwsClients
from phasegate.errors import ConfigError
from phasegate.home import REPO_ROOT
from phasegate.sandbox.seed import push_app_image
from phasegate.terraform.engine import Engine, TerraformError
from phasegate.terraform.stack import Stack

log = structlog.get_logger("phasegate.sandbox")

STACK_SOURCE = REPO_ROOT / "terraform"
STATE_BUCKET = "phasegate-tfstate"
STATE_KEY = "platform.tfstate"
VAR_FILE = "sandbox.tfvars.json"
SANDBOX_DB_PASSWORD = "sandbox-only-password"
# Every service terraform/ uses, aimed at the sandbox.
ENDPOINT_SERVICES = (
    "ec2", "ecs", "elbv2", "rds", "elasticache", "iam", "logs", "sts", "autoscaling",
    "applicationautoscaling", "cloudwatch", "sns", "budgets", "s3", "ssm", "ecr", "cloudfront",
    "route53", "kms",
)  # fmt: skip
PROVIDER_ALIASES = ("secondary",)
"""terraform/'s aliased providers (the second region's), aimed at the sandbox the same way."""


def override_hcl(endpoint: str, region: str) -> str:
    """sandbox_override.tf: the provider and the backend aimed at the sandbox at `endpoint`."""
    endpoints = "\n".join(f'    {s} = "{endpoint}"' for s in ENDPOINT_SERVICES)
    providers = "".join(_provider_hcl(endpoints, a) for a in (None, *PROVIDER_ALIASES))
    return f"""# Written by `phasegate sandbox up --via terraform`: the sandbox at {endpoint}.
terraform {{
  backend "s3" {{
    bucket                      = "{STATE_BUCKET}"
    key                         = "{STATE_KEY}"
    region                      = "{region}"
    use_lockfile                = true
    use_path_style              = true
    access_key                  = "sandbox"
    secret_key                  = "sandbox"
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
    endpoints = {{
      s3  = "{endpoint}"
      sts = "{endpoint}"
    }}
  }}
}}

{providers}"""


def _provider_hcl(endpoints: str, alias: str | None) -> str:
    aliased = f'  alias                       = "{alias}"\n' if alias else ""
    return f"""
provider "aws" {{
{aliased}  access_key                  = "sandbox"
  secret_key                  = "sandbox"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = false
  s3_use_path_style           = true
  max_retries                 = 3

  endpoints {{
{endpoints}
  }}
}}
"""


def working_copy(root: Path, name: str, endpoint: str, region: str) -> Path:
    """PHASEGATE_HOME/sandbox/terraform/NAME: terraform/ plus the sandbox override."""
    directory = root / name
    if directory.exists():
        shutil.rmtree(directory)
    shutil.copytree(
        STACK_SOURCE, directory, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
    )
    (directory / "sandbox_override.tf").write_text(override_hcl(endpoint, region))
    return directory


def preflight() -> None:
    """Refuse (exit 2) before anything starts when terraform/ or a Terraform engine is missing."""
    if not (STACK_SOURCE / "main.tf").is_file():
        raise ConfigError(f"{STACK_SOURCE}: no Terraform stack there (main.tf is missing)")
    try:
        Engine(STACK_SOURCE)
    except TerraformError as exc:
        raise ConfigError(f"sandbox up --via terraform: {exc}") from None


def apply_environment(
    clients: AwsClients, root: Path, name: str, index: int, endpoint: str
) -> dict[str, Any]:
    """Create environment `name` by `terraform apply`; the config sections that point the
    environment's executor at its stack.

    `index` keeps its VPC (10.INDEX.0.0/16) apart from the others'. Raises TerraformError
    with Terraform's own message when init or apply fails.
    """
    region = clients.settings.region
    tags = [{"Key": "Environment", "Value": name}, {"Key": "Name", "Value": f"{name}-api"}]
    image = push_app_image(clients, name, tags)
    if STATE_BUCKET not in {b["Name"] for b in clients.s3.list_buckets()["Buckets"]}:
        clients.s3.create_bucket(Bucket=STATE_BUCKET)
    directory = working_copy(root, name, endpoint, region)
    (directory / VAR_FILE).write_text(
        json.dumps(
            {
                "environment": name,
                "region": region,
                "vpc_cidr": f"10.{index}.0.0/16",
                "app_image": image,
                "db_master_password": SANDBOX_DB_PASSWORD,
            },
            indent=2,
        )
    )
    engine = Engine(directory, workspace=name)
    stack = Stack(engine, var_file=directory / VAR_FILE)
    where = f"{name}: sandbox up --via terraform"
    try:
        engine.check(f"{where}: init", "init", "-input=false")
        stack.select_workspace()
        engine.check(
            f"{where}: apply",
            "apply",
            "-input=false",
            "-auto-approve",
            f"-var-file={directory / VAR_FILE}",
        )
    except TerraformError as exc:
        raise TerraformError(str(exc), exc.locked) from None
    log.info("environment applied by terraform", environment=name, directory=str(directory))
    return {
        "executor": {"via": "terraform"},
        "terraform": {
            "dir": str(directory),
            "workspace": name,
            "var_file": str(directory / VAR_FILE),
        },
    }
