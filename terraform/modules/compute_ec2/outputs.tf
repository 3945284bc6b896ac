output "autoscaling_group_name" {
  description = "The Auto Scaling group."
  value       = aws_autoscaling_group.app.name
}

output "target_group_arn" {
  description = "The group's instance target group (its own, or the one it was given)."
  value       = local.target_group_arn
}

output "target_group_arn_suffix" {
  description = "targetgroup/NAME/ID: its own group's CloudWatch dimension (null when given one)."
  value       = one(aws_lb_target_group.app[*].arn_suffix)
}
