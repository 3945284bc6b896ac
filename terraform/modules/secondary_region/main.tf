# A standby copy of the environment in a second region (phase 3's regions.expand), in the parts
# phasegate's sub-steps make one after another: network, then the ALB, then the read replica,
# Redis and the ECS service behind that ALB, then the Route 53 failover records. Each part is
# tagged `phasegate:created-by = regions.expand.PART` besides the second region's marks, the
# contract phasegate's steps (and `phasegate failover`) find the copy by, as the API form
# tags what it makes. The replica is never promoted here: that is `phasegate failover`.

locals {
  parts = ["network", "alb", "database", "cache", "compute", "dns"]
  tags  = { for part in local.parts : part => merge(var.tags, { "phasegate:created-by" = "regions.expand.${part}" }) }
  # Names as the API form makes them: ENV-SUFFIX, the environment shortened to fit 32 characters.
  short_name = trimsuffix(substr(var.name, 0, 28), "-")
}

# Each part stands on the ones before it.
resource "terraform_data" "parts_in_order" {
  lifecycle {
    precondition {
      condition     = var.alb_enabled || !(var.database_enabled || var.cache_enabled || var.compute_enabled || var.dns_enabled)
      error_message = "The second region's database, cache, compute and dns parts need enable_secondary_alb = true: they use its security groups and listener."
    }
    precondition {
      condition     = !var.dns_enabled || var.compute_enabled
      error_message = "enable_secondary_dns needs enable_secondary_compute = true: the failover record would send users to an ALB with nothing behind it."
    }
  }
}
