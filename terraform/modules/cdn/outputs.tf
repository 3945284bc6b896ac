output "domain_name" {
  description = "The distribution's cloudfront.net name."
  value       = aws_cloudfront_distribution.this.domain_name
}
