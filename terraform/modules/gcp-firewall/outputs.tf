output "firewall_ids" {
  description = "Each rule's id (projects/P/global/firewalls/NAME), by nsgsync key (the rule's name)."
  value       = { for key, fw in google_compute_firewall.this : key => fw.id }
}

output "firewall_ids_by_segment" {
  description = "Each segment's rule ids, by segment name."
  value = {
    for segment in distinct([for r in local.export.desired : r.segment if r.type == "firewall"]) :
    segment => [
      for r in local.export.desired : google_compute_firewall.this[r.key].id
      if r.type == "firewall" && r.segment == segment
    ]
  }
}
