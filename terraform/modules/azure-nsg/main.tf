# The network security groups, rules and subnet associations of one cluster, from
# `nsgsync export json` for a topology with provider: azure.
#
# Every resource is keyed by its nsgsync key (nsg/<name>, sr/<nsg>/<rule>,
# assoc/<rg>/<vnet>/<subnet>), so a policy change adds or removes exactly the rules that
# changed. Rules are azurerm_network_security_rule resources and the NSGs have no
# security_rule argument: inline rules and rule resources on one NSG overwrite each other.
# Rules of an NSG the topology names with azure.nsgName go into that existing NSG, which
# this module never creates or changes.

locals {
  export = jsondecode(file(var.resources_file))

  nsgs         = { for r in local.export.desired : r.key => r if r.type == "network-security-group" }
  rules        = { for r in local.export.desired : r.key => r if r.type == "security-rule" }
  associations = { for r in local.export.desired : r.key => r if r.type == "subnet-association" }

  # A rule's key holds its NSG's name in lower case (ARM names ignore case): the key of
  # the NSG this module creates, and the spelling of the others, from the associations.
  nsg_key_by_name = { for key, n in local.nsgs : lower(n.body.name) => key }
  spelled = {
    for a in local.associations :
    lower(basename(a.body.properties.networkSecurityGroup.id)) => basename(a.body.properties.networkSecurityGroup.id)...
  }
}

resource "azurerm_network_security_group" "this" {
  for_each = local.nsgs

  name                = each.value.body.name
  location            = coalesce(var.location, each.value.body.location)
  resource_group_name = var.resource_group_name
  tags                = merge(var.tags, each.value.body.tags)

  lifecycle {
    precondition {
      condition     = local.export.kind == "Desired" && local.export.provider == "azure"
      error_message = "resources_file must be written by `nsgsync export json` for a topology with provider: azure."
    }
  }
}

resource "azurerm_network_security_rule" "this" {
  for_each = local.rules

  name                = each.value.body.name
  resource_group_name = var.resource_group_name
  network_security_group_name = try(
    azurerm_network_security_group.this[local.nsg_key_by_name[split("/", each.key)[1]]].name,
    local.spelled[split("/", each.key)[1]][0],
    split("/", each.key)[1],
  )
  priority  = each.value.body.properties.priority
  direction = each.value.body.properties.direction
  access    = each.value.body.properties.access
  protocol  = each.value.body.properties.protocol
  # One of each singular/plural pair is in the export; the provider refuses both.
  source_port_range            = lookup(each.value.body.properties, "sourcePortRange", null)
  source_port_ranges           = lookup(each.value.body.properties, "sourcePortRanges", null)
  destination_port_range       = lookup(each.value.body.properties, "destinationPortRange", null)
  destination_port_ranges      = lookup(each.value.body.properties, "destinationPortRanges", null)
  source_address_prefix        = lookup(each.value.body.properties, "sourceAddressPrefix", null)
  source_address_prefixes      = lookup(each.value.body.properties, "sourceAddressPrefixes", null)
  destination_address_prefix   = lookup(each.value.body.properties, "destinationAddressPrefix", null)
  destination_address_prefixes = lookup(each.value.body.properties, "destinationAddressPrefixes", null)
  description                  = lookup(each.value.body.properties, "description", null)
}

resource "azurerm_subnet_network_security_group_association" "this" {
  for_each = local.associations

  subnet_id = each.value.body.id
  network_security_group_id = try(
    azurerm_network_security_group.this[local.nsg_key_by_name[lower(basename(each.value.body.properties.networkSecurityGroup.id))]].id,
    each.value.body.properties.networkSecurityGroup.id,
  )
}
