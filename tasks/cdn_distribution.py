"""The CloudFront distribution cdn.enable asks for, and the few fields it compares.

AWS's managed policies say what each behaviour does, so the config names no TTLs itself:
static paths use CachingOptimized (cached up to a day by default, compressed, keyed on the
path only); everything else uses CachingDisabled with the AllViewer origin request policy,
which forwards every header, cookie and query string to the API, as if CloudFront were not
there. The ids are AWS's own, the same in every account.
"""

from typing import Any

CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER = "216adef6-5c7f-47e4-b989-5492eafa07d3"
ORIGIN_ID = "alb"
ALL_METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]


def _methods(items: list[str]) -> dict[str, Any]:
    return {
        "Quantity": len(items),
        "Items": items,
        "CachedMethods": {"Quantity": 2, "Items": ["GET", "HEAD"]},
    }


def distribution_config(reference: str, comment: str, shape: dict[str, Any]) -> dict[str, Any]:
    """CreateDistribution's DistributionConfig for a `shape` (see `shape_of`)."""
    static = [
        {
            "PathPattern": pattern,
            "TargetOriginId": ORIGIN_ID,
            "ViewerProtocolPolicy": "redirect-to-https",
            "AllowedMethods": _methods(["GET", "HEAD"]),
            "Compress": True,
            "CachePolicyId": shape["static"][pattern],
        }
        for pattern in shape["static"]
    ]
    return {
        "CallerReference": reference,
        "Comment": comment,
        "Enabled": shape["enabled"],
        "PriceClass": shape["price_class"],
        "HttpVersion": "http2and3",
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": ORIGIN_ID,
                    "DomainName": shape["origin"],
                    "CustomOriginConfig": {
                        "HTTPPort": 80,
                        "HTTPSPort": 443,
                        "OriginProtocolPolicy": shape["origin_protocol"],
                        "OriginSslProtocols": {"Quantity": 1, "Items": ["TLSv1.2"]},
                    },
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": ORIGIN_ID,
            "ViewerProtocolPolicy": "redirect-to-https",
            "AllowedMethods": _methods(ALL_METHODS),
            "Compress": False,
            "CachePolicyId": shape["default"]["cache_policy"],
            "OriginRequestPolicyId": shape["default"]["origin_request_policy"],
        },
        "CacheBehaviors": {"Quantity": len(static), "Items": static},
        "ViewerCertificate": {"CloudFrontDefaultCertificate": True},
    }


def shape_of(config: dict[str, Any]) -> dict[str, Any]:
    """The fields cdn.enable sets, read from a DistributionConfig (AWS's answer or ours)."""
    [origin] = config["Origins"]["Items"]
    default = config["DefaultCacheBehavior"]
    behaviours = (config.get("CacheBehaviors") or {}).get("Items") or []
    return {
        "enabled": bool(config["Enabled"]),
        "price_class": config.get("PriceClass"),
        "origin": origin["DomainName"],
        "origin_protocol": origin["CustomOriginConfig"]["OriginProtocolPolicy"],
        "viewer_protocol": default["ViewerProtocolPolicy"],
        "default": {
            "cache_policy": default.get("CachePolicyId"),
            "origin_request_policy": default.get("OriginRequestPolicyId"),
        },
        "static": {b["PathPattern"]: b.get("CachePolicyId") for b in behaviours},
    }


def desired_shape(
    origin: str, origin_protocol: str, static_paths: list[str], price_class: str
) -> dict[str, Any]:
    return {
        "enabled": True,
        "price_class": price_class,
        "origin": origin,
        "origin_protocol": origin_protocol,
        "viewer_protocol": "redirect-to-https",
        "default": {"cache_policy": CACHING_DISABLED, "origin_request_policy": ALL_VIEWER},
        "static": dict.fromkeys(static_paths, CACHING_OPTIMIZED),
    }
