"""What moto lacks for phase 3's steps, filled before moto answers.

- Auto Scaling UpdateAutoScalingGroup CapacityRebalance: moto's CreateAutoScalingGroup keeps
  it but UpdateAutoScalingGroup drops it, so a group switched to Spot by spot.enable would
  describe CapacityRebalance false for ever. On AWS the update sets it. The value asked for
  is put on moto's group, then moto answers the rest of the request as usual.
- CloudFront DeleteDistribution of an enabled distribution: moto deletes it; AWS refuses
  (412 DistributionNotDisabled) until it is disabled. Refused here as AWS does, so cdn.enable's
  rollback is proven to disable first.
- CloudFront distributions as AWS describes them: on the cloudfront.net certificate without
  an SSLSupportMethod (it only applies to a certificate of one's own), and a cache behaviour
  that names a cache policy without the legacy ForwardedValues (the policy says what is
  forwarded). moto returns both, which Terraform's aws_cloudfront_distribution planned to
  remove after every apply. Dropped from moto's distributions before each CloudFront request.

Product code never knows: it calls AWS's API and reads AWS's answers.
"""

import re
from typing import Any

from phasegate.sandbox.latency import account_and_region

_DELETE_DISTRIBUTION = re.compile(r"^DELETE /2020-05-31/distribution/([A-Z0-9]+)$")
_CLOUDFRONT_XMLNS = "http://cloudfront.amazonaws.com/doc/2020-05-31/"


def _enabled_distribution(environ: dict[str, Any], distribution: str) -> bool:
    from moto.cloudfront.models import cloudfront_backends

    account = account_and_region(environ)[0]
    found = cloudfront_backends[account]["aws"].distributions.get(distribution)
    enabled = found.distribution_config.Enabled if found is not None else False
    return str(enabled).lower() == "true"


def _as_aws_describes(environ: dict[str, Any]) -> None:
    from moto.cloudfront.models import cloudfront_backends

    account = account_and_region(environ)[0]
    for found in cloudfront_backends[account]["aws"].distributions.values():
        config = found.distribution_config
        certificate = config.ViewerCertificate
        own = certificate.acm_certificate_arn or certificate.iam_certificate_id
        if str(certificate.cloud_front_default_certificate).lower() == "true" and not own:
            certificate.ssl_support_method = None
        behaviours = [config.DefaultCacheBehavior, *(config.CacheBehaviors.get("Items") or [])]
        for behaviour in behaviours:
            if behaviour.cache_policy_id:
                behaviour.forwarded_values = None


def fill(
    service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]
) -> tuple[str, str, bytes] | None:
    """AWS's refusal where moto would accept, else None (moto answers), having set what
    moto would drop on the way."""
    if service == "autoscaling" and action == "UpdateAutoScalingGroup":
        rebalance = params.get("CapacityRebalance")
        if rebalance:
            from moto.autoscaling.models import autoscaling_backends

            account, region = account_and_region(environ)
            name = params.get("AutoScalingGroupName", [""])[0]
            group = autoscaling_backends[account][region].autoscaling_groups.get(name)
            if group is not None:
                group.capacity_rebalance = rebalance[0].lower() == "true"
    if service == "cloudfront":
        _as_aws_describes(environ)
    deleting = _DELETE_DISTRIBUTION.match(action) if service == "cloudfront" else None
    if deleting and _enabled_distribution(environ, deleting.group(1)):
        body = (
            f'<ErrorResponse xmlns="{_CLOUDFRONT_XMLNS}"><Error><Type>Sender</Type>'
            "<Code>DistributionNotDisabled</Code><Message>The distribution you are trying to "
            "delete has not been disabled.</Message></Error>"
            "<RequestId>phasegate-sandbox</RequestId></ErrorResponse>"
        )
        return "412 Precondition Failed", "text/xml", body.encode()
    return None
