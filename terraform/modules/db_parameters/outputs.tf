output "name" {
  description = "The tuned parameter group."
  value       = aws_db_parameter_group.this.name
}
