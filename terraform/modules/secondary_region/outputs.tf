output "vpc_id" {
  description = "The second region's VPC."
  value       = aws_vpc.this.id
}

output "alb_dns_name" {
  description = "Where the second region's app answers (null before its ALB part)."
  value       = one(module.alb[*].dns_name)
}

output "replica" {
  description = "The read replica's identifier (null before the database part)."
  value       = one(aws_db_instance.replica[*].identifier)
}
