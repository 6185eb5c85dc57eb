output "network_security_group_ids" {
  description = "The id of each NSG the module creates, by the segment it is named after."
  value       = { for key, n in azurerm_network_security_group.this : local.nsgs[key].segment => n.id }
}

output "rule_ids" {
  description = "Each rule's id (.../securityRules/NAME), by nsgsync key."
  value       = { for key, r in azurerm_network_security_rule.this : key => r.id }
}
