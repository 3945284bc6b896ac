# Route 53 failover: the record answers with the primary's ALB while its health check passes,
# else with this region's. The checks' caller references start phasegate-ENV-ROLE- (the
# provider appends a unique id), as the API form's do, so either form finds them.

locals {
  sides = var.dns_enabled ? {
    primary   = var.primary_alb
    secondary = { dns_name = module.alb[0].dns_name, zone_id = module.alb[0].zone_id }
  } : {}
}

resource "aws_route53_health_check" "side" {
  for_each          = local.sides
  type              = "HTTP"
  fqdn              = each.value.dns_name
  port              = 80
  resource_path     = var.health_check_path
  request_interval  = 30
  failure_threshold = 3
  reference_name    = "phasegate-${var.name}-${each.key}"
  tags              = merge(local.tags.dns, { Name = "${var.name} ${each.key}" })
}

resource "aws_route53_record" "failover" {
  for_each        = local.sides
  zone_id         = var.zone_id
  name            = var.record_name
  type            = "A"
  set_identifier  = "${var.name}-${each.key}"
  health_check_id = aws_route53_health_check.side[each.key].id

  failover_routing_policy {
    type = upper(each.key)
  }

  alias {
    name                   = each.value.dns_name
    zone_id                = each.value.zone_id
    evaluate_target_health = true
  }
}
