# Phase 3 (cdn.enable): a CloudFront distribution in front of the ALB. Static paths are cached
# (AWS's managed CachingOptimized policy); everything else goes to the API uncached, with
# every header, cookie and query string (CachingDisabled + AllViewer), as if CloudFront were
# not there. The same distribution cdn.enable makes with the API, tagged so that the step
# finds it whoever made it.

locals {
  # AWS's managed policies: the same ids in every account.
  caching_optimized = "658327ea-f89d-4fab-a63d-7e88639e58f6"
  caching_disabled  = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
  all_viewer        = "216adef6-5c7f-47e4-b989-5492eafa07d3"
  origin_id         = "alb"
}

resource "aws_cloudfront_distribution" "this" {
  enabled      = true
  comment      = "phasegate ${var.name}: cdn.enable"
  price_class  = var.price_class
  http_version = "http2and3"
  # The apply waits until AWS says Deployed (minutes on AWS), as cdn.enable does.
  tags = merge(var.tags, { "phasegate:created-by" = "cdn.enable" })

  origin {
    origin_id   = local.origin_id
    domain_name = var.origin_domain

    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = var.origin_protocol
      origin_ssl_protocols   = ["TLSv1.2"]
    }
  }

  default_cache_behavior {
    target_origin_id         = local.origin_id
    viewer_protocol_policy   = "redirect-to-https"
    allowed_methods          = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods           = ["GET", "HEAD"]
    compress                 = false
    cache_policy_id          = local.caching_disabled
    origin_request_policy_id = local.all_viewer
  }

  dynamic "ordered_cache_behavior" {
    for_each = var.static_paths
    content {
      path_pattern           = ordered_cache_behavior.value
      target_origin_id       = local.origin_id
      viewer_protocol_policy = "redirect-to-https"
      allowed_methods        = ["GET", "HEAD"]
      cached_methods         = ["GET", "HEAD"]
      compress               = true
      cache_policy_id        = local.caching_optimized
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }
}
