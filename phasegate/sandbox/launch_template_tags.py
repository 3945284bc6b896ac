"""Sandbox gap-filler: a launch template's own tags are not part of its versions' data.

CreateLaunchTemplate's top-level TagSpecifications (ResourceType launch-template) tag the
template itself; on AWS, DescribeLaunchTemplateVersions shows in LaunchTemplateData only the
TagSpecifications given inside it (for instances, volumes, ...). moto (5.x) copies the
template's own tags into version 1's data as well, so Terraform's aws_launch_template read a
`tag_specifications { resource_type = "launch-template" }` block it never configured and
planned a new version (and the Auto Scaling group's update) on every run. Here moto's stored
versions lose those entries before it answers.
"""

from typing import Any

from phasegate.sandbox.latency import account_and_region

TEMPLATE_ITSELF = "launch-template"


def fill(service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    """Drop the template's own tag specification from every version's data; never answers."""
    if service != "ec2" or action != "DescribeLaunchTemplateVersions":
        return None
    from moto.ec2.models import ec2_backends

    account, region = account_and_region(environ)
    for template in ec2_backends[account][region].launch_templates.values():
        for version in template.versions:
            specs = version.data.get("TagSpecifications")
            if not specs:
                continue
            kept = [s for s in specs if s.get("ResourceType") != TEMPLATE_ITSELF]
            if kept:
                version.data["TagSpecifications"] = kept
            else:
                del version.data["TagSpecifications"]
    return None
