output "security_group_ids" {
  description = "Each segment's security group id, by segment name (for SecurityGroupPolicy)."
  value       = { for key, g in aws_security_group.this : local.groups[key].segment => g.id }
}

output "rule_ids" {
  description = "Each rule's id (sgr-...), by nsgsync key."
  value = merge(
    { for key, r in aws_vpc_security_group_ingress_rule.this : key => r.id },
    { for key, r in aws_vpc_security_group_egress_rule.this : key => r.id },
  )
}
