variable "resources_file" {
  description = "Path of the JSON document `nsgsync export json` writes (its `desired` list)."
  type        = string
}

variable "resource_group_name" {
  description = "The resource group of the NSGs (the topology's azure.resourceGroup)."
  type        = string
}

variable "location" {
  description = "The Azure region of the NSGs; null keeps each NSG's location from the export (azure.location)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every NSG the module creates; nsgsync's own tags (nsgsync.io/*) win."
  type        = map(string)
  default     = {}
}
