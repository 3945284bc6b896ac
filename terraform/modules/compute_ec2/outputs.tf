output "autoscaling_group_name" {
  description = "The Auto Scaling group."
  value       = aws_autoscaling_group.app.name
}
