package warden_test

# OPA-style unit tests: `warden policy test` evaluates every `test_` rule of
# the modules a `rego:` block lists and counts it passed when it is true.

import data.warden

test_blocked_host_denied if {
	v := warden.verdict with input as {"point": "pre_tool_call", "agent": "bot", "tool": "http.get", "args": {"host": "evil.example"}, "context": {}}
	v.verdict == "deny"
	v.reasons == ["host evil.example is blocked"]
}

test_other_host_undefined if {
	not warden.verdict with input as {"point": "pre_tool_call", "agent": "bot", "tool": "http.get", "args": {"host": "docs.rs"}, "context": {}}
}

test_ops_shell_allowed if {
	warden.verdict == "allow" with input as {"point": "pre_tool_call", "agent": "ops", "tool": "shell.exec", "args": {}, "context": {}}
}

test_blocklist_from_data if {
	"pastebin.com" in data.blocked_hosts
}
