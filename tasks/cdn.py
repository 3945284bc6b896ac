"""`cdn.enable`: a CloudFront distribution in front of the ALB (opt in: `cdn.enabled`).

Static assets (`cdn.static_paths`, default `/static/*` and `/assets/*`) are then served from
the edge, close to users and without reaching the app; everything else passes through to
the API uncached with all headers, cookies and query strings (tasks/cdn_distribution.py).
Viewers get HTTPS on the distribution's cloudfront.net name (HTTP is redirected); CloudFront
reaches the ALB over HTTPS when the ALB has an HTTPS listener, else over HTTP.

The distribution is found again by its tags (`phasegate:created-by = cdn.enable` plus the
environment's discovery tags), so a re-run reuses it and never makes a second. Creating or
changing one takes minutes (InProgress until Deployed); apply waits for Deployed. AWS refuses
to delete an enabled distribution, so rollback disables it, waits for Deployed, then deletes
it with the ETag of the disabled config.
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import LOAD_BALANCER_IAM_ACTIONS, Discovery
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
from tasks.cdn_distribution import desired_shape, distribution_config, shape_of


class CdnObservation(Observation):
    """The ALB to put behind CloudFront and our distribution, if one exists."""

    origin: str
    origin_protocol: str
    distribution: str | None
    current: dict[str, Any] | None


class CdnEnable(Step):
    """CloudFront in front of the ALB: static paths cached, the API passed through."""

    id = "cdn.enable"
    phase = 3
    title = "CDN: a CloudFront distribution caching static paths in front of the ALB"
    iam_actions = (
        *LOAD_BALANCER_IAM_ACTIONS,
        "elasticloadbalancing:DescribeListeners",
        "cloudfront:ListDistributions",
        "cloudfront:ListTagsForResource",
        "cloudfront:GetDistribution",
        "cloudfront:GetDistributionConfig",
        "cloudfront:CreateDistribution",
        "cloudfront:CreateDistributionWithTags",
        "cloudfront:TagResource",
        "cloudfront:UpdateDistribution",
        "cloudfront:DeleteDistribution",
    )

    def terraform_decisions(self) -> dict[str, Any]:
        """terraform/'s cdn module: the same distribution, tagged so `_ours` finds it."""
        cdn = self.ctx.config.cdn
        if not cdn.enabled:
            return {}
        return {
            "enable_cdn": True,
            "cdn_static_paths": list(cdn.static_paths),
            "cdn_price_class": cdn.price_class,
        }

    @property
    def cloudfront(self) -> Any:
        return self.clients.client("cloudfront")

    def target(self) -> dict[str, Any]:
        return self.ctx.config.cdn.model_dump()

    @property
    def reference(self) -> str:
        return f"phasegate-{self.ctx.config.name}-cdn"

    def _tags(self) -> dict[str, str]:
        return {**self.ctx.config.discovery.tags, CREATED_BY_TAG: self.id}

    # -- reading -------------------------------------------------------------------------

    def _ours(self) -> str | None:
        """The id of the distribution carrying our tags, or None."""
        wanted = self._tags()
        listing = self.cloudfront.list_distributions()["DistributionList"]
        for item in listing.get("Items") or []:
            tags = self.cloudfront.list_tags_for_resource(Resource=item["ARN"])["Tags"]
            found = {t["Key"]: t["Value"] for t in tags.get("Items") or []}
            if all(found.get(k) == v for k, v in wanted.items()):
                return item["Id"]
        return None

    def _origin(self) -> tuple[str, str]:
        """The ALB's DNS name, and how CloudFront should reach it (https if it listens so)."""
        albs = [
            lb
            for lb in Discovery(self.ctx.config, self.clients).load_balancers()
            if lb.scheme == "internet-facing"
        ]
        if len(albs) != 1:
            found = ", ".join(lb.name for lb in albs) or "none"
            raise StepRefused(
                f"{self.ctx.config.name}: {self.id} puts exactly one internet-facing ALB "
                f"behind CloudFront; found {found}"
            )
        listeners = self.clients.elbv2.describe_listeners(LoadBalancerArn=albs[0].arn)
        https = any(x["Protocol"] == "HTTPS" for x in listeners["Listeners"])
        return albs[0].dns_name, "https-only" if https else "http-only"

    def _shape(self, distribution: str) -> tuple[dict[str, Any], str]:
        """The distribution's shape and status (InProgress or Deployed)."""
        found = self.cloudfront.get_distribution(Id=distribution)["Distribution"]
        return shape_of(found["DistributionConfig"]), found["Status"]

    def observe(self) -> CdnObservation:
        if not self.ctx.config.cdn.enabled:
            return CdnObservation(origin="", origin_protocol="", distribution=None, current=None)
        origin, protocol = self._origin()
        distribution = self._ours()
        current = self._shape(distribution)[0] if distribution else None
        return CdnObservation(
            origin=origin, origin_protocol=protocol, distribution=distribution, current=current
        )

    # -- planning ------------------------------------------------------------------------

    def desired(self, obs: CdnObservation) -> dict[str, Any]:
        cdn = self.ctx.config.cdn
        return desired_shape(obs.origin, obs.origin_protocol, cdn.static_paths, cdn.price_class)

    def _delta(self) -> tuple[float, str]:
        """CloudFront's request charge at `usage.requests_per_month`; transfer is left out
        (viewers' bytes then leave through CloudFront instead of the ALB, at a similar rate)."""
        prices = self.ctx.prices
        rates = prices.cloudfront if prices else None
        requests = self.ctx.config.usage.requests_per_month
        if rates is None:
            return 0.0, "not priced: the price table has no cloudfront rates"
        if requests is None:
            return 0.0, "requests not priced: set usage.requests_per_month"
        cost = requests / 10_000 * rates.https_requests_per_10k.usd
        return round(cost, 2), (
            f"{requests:,.0f} HTTPS requests a month at ${rates.https_requests_per_10k.usd} "
            f"per 10,000, prices as of {prices.as_of if prices else ''}"
        )

    def plan(self, obs: Observation) -> Change | None:
        assert isinstance(obs, CdnObservation)
        if not self.ctx.config.cdn.enabled:
            return None
        desired = self.desired(obs)
        if obs.current == desired:
            return None
        delta, basis = self._delta()
        paths = ", ".join(self.ctx.config.cdn.static_paths)
        verb = (
            "UpdateDistribution " + obs.distribution if obs.distribution else "CreateDistribution"
        )
        return self.change(
            f"CloudFront in front of {obs.origin}: {paths} cached, the rest passed through "
            f"uncached ({basis})",
            [
                f"cloudfront:{verb} origin {obs.origin} ({obs.origin_protocol}), cache "
                f"behaviours {paths} (CachingOptimized), default CachingDisabled + AllViewer, "
                "HTTPS to viewers",
                "wait until the distribution is Deployed",
            ],
            delta,
            reversibility=Reversibility(
                restart_needed=False,
                rollback_possible=True,
                expected_disruption="none: the ALB keeps answering directly; clients move to "
                "the distribution's name when DNS points at it",
            ),
            before={"distribution": obs.distribution, "shape": obs.current},
            desired={"shape": desired},
        )

    # -- changing ------------------------------------------------------------------------

    def apply(self, change: Change) -> dict[str, Any]:
        shape = change.desired["shape"]
        comment = f"phasegate {self.ctx.config.name}: {self.id}"
        distribution = self._ours()
        if distribution is None:
            tags = [{"Key": k, "Value": v} for k, v in self._tags().items()]
            made = self.cloudfront.create_distribution_with_tags(
                DistributionConfigWithTags={
                    "DistributionConfig": distribution_config(self.reference, comment, shape),
                    "Tags": {"Items": tags},
                }
            )
            distribution = made["Distribution"]["Id"]
            self.progress(distribution=distribution, created=True)
        else:
            found = self.cloudfront.get_distribution_config(Id=distribution)
            reference = found["DistributionConfig"]["CallerReference"]
            self.cloudfront.update_distribution(
                Id=distribution,
                IfMatch=found["ETag"],
                DistributionConfig=distribution_config(reference, comment, shape),
            )
            self.progress(distribution=distribution)
        self._wait_deployed(distribution)
        return {"distribution": distribution, "shape": shape}

    def _wait_deployed(self, distribution: str) -> None:
        self.ctx.wait(
            f"CloudFront distribution {distribution} Deployed",
            lambda: self._shape(distribution)[1],
            lambda status: status == "Deployed",
            kind="cloudfront_deploy",
        )

    # -- proving -------------------------------------------------------------------------

    def verify(self, record: Record) -> None:
        """AWS shows our distribution Deployed with the recorded shape."""
        distribution = record.after.get("distribution") or self._ours()
        if record.change is None:
            if not self.ctx.config.cdn.enabled:
                return
            expected = self.desired(self.observe())
        else:
            expected = record.change.desired["shape"]
        if distribution is None:
            raise VerificationFailed.of(
                f"{self.ctx.config.name}: {self.id}",
                {"distribution": diff_entry("a distribution of cdn.enable", None)},
            )
        try:
            found, status = self._shape(distribution)
        except AwsCallError as exc:
            if exc.code != "NoSuchDistribution":
                raise
            raise VerificationFailed.of(
                f"{self.ctx.config.name}: {self.id}",
                {f"{distribution}": diff_entry("exists", "deleted")},
            ) from exc
        if status != "Deployed":
            raise Settling(f"CloudFront distribution {distribution} is {status}")
        diff = {
            f"{distribution}.{k}": diff_entry(v, found.get(k))
            for k, v in expected.items()
            if found.get(k) != v
        }
        if diff:
            raise VerificationFailed.of(f"{self.ctx.config.name}: {self.id}", diff)

    def rollback(self, record: Record) -> None:
        """Delete a distribution this step created (disable, wait, delete); put back the
        config of one it changed."""
        before = record.before or (record.change.before if record.change else {})
        distribution = record.after.get("distribution") or before.get("distribution")
        if distribution is None:
            return
        if before.get("shape") is not None:
            found = self.cloudfront.get_distribution_config(Id=distribution)
            config = found["DistributionConfig"]
            self.cloudfront.update_distribution(
                Id=distribution,
                IfMatch=found["ETag"],
                DistributionConfig=distribution_config(
                    config["CallerReference"], config.get("Comment", ""), before["shape"]
                ),
            )
            self._wait_deployed(distribution)
            return
        try:
            found = self.cloudfront.get_distribution_config(Id=distribution)
        except AwsCallError as exc:
            if exc.code == "NoSuchDistribution":
                return  # deleted already: a rollback resumed after a crash
            raise
        etag = found["ETag"]
        if found["DistributionConfig"]["Enabled"]:
            config = {**found["DistributionConfig"], "Enabled": False}
            etag = self.cloudfront.update_distribution(
                Id=distribution, IfMatch=etag, DistributionConfig=config
            )["ETag"]
        self._wait_deployed(distribution)
        self.cloudfront.delete_distribution(Id=distribution, IfMatch=etag)

    def verify_rollback(self, record: Record) -> None:
        """No distribution of ours, or the one from before with its old shape."""
        before = record.before or (record.change.before if record.change else {})
        if before.get("shape") is None:
            left = self._ours()
            if left is not None:
                raise VerificationFailed(
                    f"{self.ctx.config.name}: {self.id}: distribution {left} is still there "
                    "after rollback"
                )
            return
        found, _ = self._shape(before["distribution"])
        if found != before["shape"]:
            raise VerificationFailed(
                f"{self.ctx.config.name}: {self.id}: distribution {before['distribution']} "
                f"shows {found} after rollback, expected {before['shape']}"
            )
