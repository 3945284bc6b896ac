output "security_group_id" {
  description = "The ALB's security group (the app admits only it)."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "The app's target group."
  value       = aws_lb_target_group.app.arn
}

output "dns_name" {
  description = "The ALB's DNS name."
  value       = aws_lb.this.dns_name
}

output "arn_suffix" {
  description = "app/NAME/ID: the ALB's CloudWatch dimension."
  value       = aws_lb.this.arn_suffix
}

output "target_group_arn_suffix" {
  description = "targetgroup/NAME/ID: the target group's CloudWatch dimension."
  value       = aws_lb_target_group.app.arn_suffix
}

output "zone_id" {
  description = "The ALB's canonical hosted zone (a Route 53 alias target's zone)."
  value       = aws_lb.this.zone_id
}
