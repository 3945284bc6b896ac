# The platform as DESIGN.md describes today's architecture, one module per part. Each
# migration decision is a variable (variables.tf); phasegate's Terraform executor changes
# those variables, never the resources behind Terraform's back.

locals {
  tags = merge(var.tags, { Environment = var.environment })
}

data "aws_availability_zones" "available" {
  state = "available"
}

module "network" {
  source             = "./modules/network"
  name               = var.environment
  cidr               = var.vpc_cidr
  azs                = slice(data.aws_availability_zones.available.names, 0, var.az_count)
  enable_nat_gateway = var.enable_nat_gateway
  enable_s3_endpoint = var.enable_s3_endpoint
  tags               = local.tags
}

# The listener forwards to the compute `compute_mode` names, and at weight 0 to the other one
# while it runs (a move's warm-up, or its rollback's), so it is health-checked before it serves.
module "alb" {
  source                 = "./modules/alb"
  name                   = var.environment
  vpc_id                 = module.network.vpc_id
  public_subnet_ids      = module.network.public_subnet_ids
  app_port               = var.app_port
  own_weight             = var.compute_mode == "ec2" ? (var.ecs_service_enabled ? 0 : null) : 1
  other_target_group_arn = one(module.compute_ec2[*].target_group_arn)
  other_weight           = var.compute_mode == "ec2" ? 1 : 0
  tags                   = local.tags
}

locals {
  # The target group users reach: its dimension for the alarms and the request-count scaling.
  serving_target_group = var.compute_mode == "ec2" ? one(module.compute_ec2[*].target_group_arn_suffix) : module.alb.target_group_arn_suffix
}

# compute_mode names what serves; the compute it names must run.
resource "terraform_data" "compute_serves" {
  lifecycle {
    precondition {
      condition     = var.compute_mode == "ec2" ? var.ec2_group_enabled : var.ecs_service_enabled
      error_message = "compute_mode ${var.compute_mode} needs ${var.compute_mode == "ec2" ? "ec2_group_enabled" : "ecs_service_enabled"} = true: the listener would forward to nothing."
    }
  }
}

locals {
  service_subnet_ids = var.service_subnets == "public" ? module.network.public_subnet_ids : module.network.private_subnet_ids
}

resource "aws_security_group" "app" {
  name        = "${var.environment}-app"
  description = "App tasks: port ${var.app_port} from the ALB"
  vpc_id      = module.network.vpc_id
  tags        = merge(local.tags, { Name = "${var.environment}-app" })

  ingress {
    description     = "app port from the ALB"
    from_port       = var.app_port
    to_port         = var.app_port
    protocol        = "tcp"
    security_groups = [module.alb.security_group_id]
  }

  egress {
    description = "image pulls, AWS APIs and the data stores"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"] #checkov:skip=CKV_AWS_382:the app needs ECR, AWS APIs and outside HTTPS
  }
}

module "compute_ecs" {
  source            = "./modules/compute_ecs"
  count             = var.ecs_service_enabled ? 1 : 0
  name              = var.environment
  region            = var.region
  image             = var.app_image
  app_port          = var.app_port
  cpu_architecture  = var.cpu_architecture
  desired_count     = var.app_desired_count
  subnet_ids        = local.service_subnet_ids
  assign_public_ip  = var.service_subnets == "public"
  security_group_id = aws_security_group.app.id
  target_group_arn  = module.alb.target_group_arn
  # Phase 3 (spot.enable)
  enable_spot              = var.enable_spot
  spot_fargate_base        = var.spot_fargate_base
  spot_fargate_weight      = var.spot_fargate_weight
  spot_fargate_spot_weight = var.spot_fargate_spot_weight
  tags                     = local.tags
}

module "compute_ec2" {
  source            = "./modules/compute_ec2"
  count             = var.ec2_group_enabled ? 1 : 0
  name              = var.environment
  image             = var.app_image
  app_port          = var.app_port
  instance_type     = var.ec2_instance_type
  min_size          = var.asg_min
  max_size          = var.asg_max
  desired_capacity  = min(max(var.asg_min, var.app_desired_count), var.asg_max)
  subnet_ids        = local.service_subnet_ids
  security_group_id = aws_security_group.app.id
  vpc_id            = module.network.vpc_id
  group_metrics     = var.enable_autoscaling ? ["GroupDesiredCapacity", "GroupInServiceInstances"] : []
  # Phase 3 (spot.enable)
  enable_spot         = var.enable_spot
  spot_on_demand_base = var.spot_on_demand_base
  spot_instance_types = var.spot_instance_types
  tags                = local.tags
}

# Phase 2 (scaling.enable): target tracking on the compute above, between the decisions' bounds.
module "scaling" {
  source                     = "./modules/scaling"
  count                      = var.enable_autoscaling ? 1 : 0
  name                       = var.environment
  compute_mode               = var.compute_mode
  ecs_cluster                = one(module.compute_ecs[*].cluster_name)
  ecs_service                = one(module.compute_ecs[*].service_name)
  autoscaling_group          = one(module.compute_ec2[*].autoscaling_group_name)
  resource_label             = "${module.alb.arn_suffix}/${local.serving_target_group}"
  min_capacity               = var.autoscaling_min_capacity
  max_capacity               = var.autoscaling_max_capacity
  cpu_target_percent         = var.autoscaling_cpu_target_percent
  requests_per_target        = var.autoscaling_requests_per_target
  scale_in_cooldown_seconds  = var.autoscaling_scale_in_cooldown_seconds
  scale_out_cooldown_seconds = var.autoscaling_scale_out_cooldown_seconds
  instance_warmup_seconds    = var.autoscaling_instance_warmup_seconds
  tags                       = local.tags
}

resource "aws_security_group" "data" {
  name        = "${var.environment}-data"
  description = "RDS and Redis: from the app"
  vpc_id      = module.network.vpc_id
  tags        = merge(local.tags, { Name = "${var.environment}-data" })

  ingress {
    description     = "PostgreSQL from the app"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.app.id]
  }

  ingress {
    description     = "Redis from the app"
    from_port       = 6379
    to_port         = 6379
    protocol        = "tcp"
    security_groups = [aws_security_group.app.id]
  }
}

# Phase 2 (database.connections): the tuned parameter group, attached to the instance below.
module "db_parameters" {
  source                                 = "./modules/db_parameters"
  count                                  = var.enable_db_tuning ? 1 : 0
  db_identifier                          = "${var.environment}-db"
  family                                 = local.db_family
  max_connections                        = var.db_max_connections
  idle_in_transaction_session_timeout_ms = var.db_idle_in_transaction_session_timeout_ms
  tcp_keepalives_idle_seconds            = var.db_tcp_keepalives_idle_seconds
  log_min_duration_statement_ms          = var.db_log_min_duration_statement_ms
  tags                                   = local.tags
}

locals {
  db_family = "postgres16"
}

module "rds" {
  source               = "./modules/rds"
  name                 = var.environment
  instance_class       = var.rds_instance_class
  parameter_group_name = var.enable_db_tuning ? module.db_parameters[0].name : "default.${local.db_family}"
  subnet_ids           = module.network.private_subnet_ids
  security_group_id    = aws_security_group.data.id
  master_password      = var.db_master_password
  tags                 = local.tags
}

module "redis" {
  source            = "./modules/redis"
  name              = var.environment
  node_type         = var.redis_node_type
  subnet_ids        = module.network.private_subnet_ids
  security_group_id = aws_security_group.data.id
  tags              = local.tags
}

# Phase 2 (monitoring.enable): alert topic, dashboard, alarms, budget and error-line count.
module "monitoring" {
  source                   = "./modules/monitoring"
  count                    = var.enable_monitoring ? 1 : 0
  name                     = var.environment
  region                   = var.region
  compute_mode             = var.compute_mode
  load_balancer            = module.alb.arn_suffix
  target_group             = local.serving_target_group
  ecs_cluster              = one(module.compute_ecs[*].cluster_name)
  ecs_service              = one(module.compute_ecs[*].service_name)
  autoscaling_group        = one(module.compute_ec2[*].autoscaling_group_name)
  max_capacity             = var.compute_mode == "ec2" ? var.asg_max : var.autoscaling_max_capacity
  db_identifier            = module.rds.identifier
  db_connections_threshold = var.alarm_db_connections_threshold
  cache_members            = module.redis.member_clusters
  log_group                = var.monitoring_log_group != "" ? var.monitoring_log_group : one(module.compute_ecs[*].log_group)
  emails                   = var.alert_emails
  https_endpoints          = var.alert_https_endpoints
  monthly_budget_usd       = var.monthly_budget_usd
  budget_cost_filter       = var.budget_cost_filter
  thresholds               = var.alarm_thresholds
  tags                     = local.tags
}

# Phase 3 (cdn.enable): CloudFront in front of the ALB.
module "cdn" {
  source          = "./modules/cdn"
  count           = var.enable_cdn ? 1 : 0
  name            = var.environment
  origin_domain   = module.alb.dns_name
  origin_protocol = "http-only" # the ALB above listens on HTTP only (no certificate yet)
  static_paths    = var.cdn_static_paths
  price_class     = var.cdn_price_class
  tags            = local.tags
}

# Phase 3 (regions.expand): the standby copy in `secondary_region`, part by part.
resource "terraform_data" "secondary_region_named" {
  lifecycle {
    precondition {
      condition     = !var.enable_secondary_network || var.secondary_region != ""
      error_message = "enable_secondary_network needs secondary_region: the region the copy is made in."
    }
  }
}

module "secondary_region" {
  source    = "./modules/secondary_region"
  count     = var.enable_secondary_network ? 1 : 0
  providers = { aws = aws.secondary }

  name             = var.environment
  region           = var.secondary_region
  cidr             = var.secondary_vpc_cidr
  tags             = merge(local.tags, var.secondary_tags)
  alb_enabled      = var.enable_secondary_alb
  database_enabled = var.enable_secondary_database
  cache_enabled    = var.enable_secondary_cache
  compute_enabled  = var.enable_secondary_compute
  dns_enabled      = var.enable_secondary_dns

  app_port          = var.app_port
  image             = var.app_image
  compute_mode      = var.compute_mode
  ec2_instance_type = var.ec2_instance_type
  asg_min           = var.asg_min
  asg_max           = var.asg_max
  cpu_architecture  = var.cpu_architecture
  desired_count     = var.app_desired_count
  redis_node_type   = var.redis_node_type
  primary_db_arn    = module.rds.arn
  db_identifier     = module.rds.identifier
  db_instance_class = var.rds_instance_class
  db_family         = local.db_family
  db_tuning = var.enable_db_tuning ? {
    max_connections                        = var.db_max_connections
    idle_in_transaction_session_timeout_ms = var.db_idle_in_transaction_session_timeout_ms
    tcp_keepalives_idle_seconds            = var.db_tcp_keepalives_idle_seconds
    log_min_duration_statement_ms          = var.db_log_min_duration_statement_ms
  } : null
  primary_alb       = { dns_name = module.alb.dns_name, zone_id = module.alb.zone_id }
  zone_id           = var.failover_zone_id
  record_name       = var.failover_record_name
  health_check_path = var.failover_health_check_path
}
