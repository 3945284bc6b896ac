output "policy_names" {
  description = "The target-tracking policies."
  value       = sort(concat(keys(aws_appautoscaling_policy.service), keys(aws_autoscaling_policy.group)))
}
