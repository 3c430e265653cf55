# `--check-config` of both binaries on good and bad files under tests/data/config/ (label unit).
# expect_exit.sh checks the exit code (UNEXPECTED EXIT CODE fails the test) and marks stdout "out| "
# and stderr "err| ", so each regex asserts the exact text and where it went.
set(CS_CONFIG_DATA ${CS_TEST_DATA}/config)
set(CS_EXPECT ${CMAKE_CURRENT_SOURCE_DIR}/expect_exit.sh)

# cs_check_config_test(NAME BINARY FILE RC REGEX)
function(cs_check_config_test name binary file rc regex)
  add_test(NAME ${name}
    COMMAND ${CS_EXPECT} ${rc} $<TARGET_FILE:${binary}> --check-config --config ${file})
  set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT 60
    PASS_REGULAR_EXPRESSION "${regex}" FAIL_REGULAR_EXPRESSION "UNEXPECTED EXIT CODE")
endfunction()

set(C certsync-collector)
set(P certsync-publisher)
set(D ${CS_CONFIG_DATA})

# Secret paths given absolute must not resolve against the config file's directory.
configure_file(${D}/collector-abs.yaml.in ${CMAKE_CURRENT_BINARY_DIR}/collector-abs.yaml @ONLY)

cs_check_config_test(check_config_collector_good ${C} ${D}/collector-good.yaml 0
  "out\\| config ok: [^\n]*/collector-good.yaml\n")
cs_check_config_test(check_config_collector_absolute_secret ${C} ${CMAKE_CURRENT_BINARY_DIR}/collector-abs.yaml 0
  "out\\| config ok: [^\n]*/collector-abs.yaml\n")
cs_check_config_test(check_config_collector_unknown_key ${C} ${D}/collector-unknown-key.yaml 2
  "err\\| [^\n]*/collector-unknown-key.yaml:5: unknown key \"ldap.urll\" \\(did you mean \"ldap.url\"\\?\\)")
cs_check_config_test(check_config_collector_many_errors ${C} ${D}/collector-many-errors.yaml 2
  "collector-many-errors.yaml:5: ldap.page_size = 0 is out of range: allowed 1..5000\nerr\\| [^\n]*:6: ldap.poll_interval = \"2 seconds\" is not a duration[^\n]*\nerr\\| [^\n]*:7: ldap.mode = \"dirsnyc\" is not allowed: expected one of auto, dirsync, usn, syncrepl \\(did you mean \"dirsync\"\\?\\)\nerr\\| [^\n]*:8: ldap.starttls = \"yes\" is not a boolean: write true or false\nerr\\| [^\n]*:9: batch.max_events = 0 is out of range: allowed 1..100000\nerr\\| [^\n]*:12: kafka.acks = \"banana\": librdkafka rejected this property: Invalid value for configuration property \"request.required.acks\"[^\n]*\nerr\\| [^\n]*:13: kafka.no.such.property = \"1\": librdkafka rejected this property: No such configuration property: \"no.such.property\"")
cs_check_config_test(check_config_collector_missing_secret ${C} ${D}/collector-missing-secret.yaml 2
  "err\\| [^\n]*collector-missing-secret.yaml:4: ldap.password_file: secret file \"[^\"]*/secrets/does-not-exist\" is unusable: cannot open it: No such file or directory; create it \\(e.g. mount a Kubernetes Secret there\\) or fix the path \\(relative paths resolve against the config file's directory")
cs_check_config_test(check_config_collector_plaintext_bind ${C} ${D}/collector-plaintext-bind.yaml 2
  "err\\| [^\n]*collector-plaintext-bind.yaml:3: ldap.bind_dn: a simple bind over ldap://dc1.corp.example.test without StartTLS would send the password in clear text: use ldaps://, set ldap.starttls: true, or \\(tests only\\) set ldap.allow_plaintext_bind: true")
cs_check_config_test(check_config_collector_missing_required ${C} ${D}/collector-missing-required.yaml 2
  "err\\| [^\n]*collector-missing-required.yaml: missing required key \"source.id\": Stable id of this directory source")

cs_check_config_test(check_config_publisher_good ${P} ${D}/publisher-good.yaml 0
  "out\\| config ok: [^\n]*/publisher-good.yaml\n")
cs_check_config_test(check_config_publisher_secret_auth ${P} ${D}/publisher-secret-auth.yaml 0
  "out\\| config ok: [^\n]*/publisher-secret-auth.yaml\n")
cs_check_config_test(check_config_publisher_auth_incomplete ${P} ${D}/publisher-auth-incomplete.yaml 2
  "err\\| [^\n]*publisher-auth-incomplete.yaml:5: o365.auth: secret needs o365.client_secret_file")
cs_check_config_test(check_config_publisher_empty_secret ${P} ${D}/publisher-empty-secret.yaml 2
  "err\\| [^\n]*publisher-empty-secret.yaml:6: o365.client_secret_file: secret file \"[^\"]*/secrets/empty-secret\" is unusable: it is empty; put the secret in it")
cs_check_config_test(check_config_publisher_missing_required ${P} ${D}/publisher-missing-required.yaml 2
  "err\\| [^\n]*publisher-missing-required.yaml: missing required key \"o365.tenant_id\": Entra tenant id \\(GUID\\).")
cs_check_config_test(check_config_publisher_malformed ${P} ${D}/publisher-malformed.yaml 2
  "err\\| [^\n]*publisher-malformed.yaml:5:1: malformed YAML: found unexpected end of stream \\(while scanning a quoted scalar at line 3\\)")
cs_check_config_test(check_config_publisher_wrong_type ${P} ${D}/publisher-wrong-type.yaml 2
  "err\\| [^\n]*publisher-wrong-type.yaml:3: o365.tenant_domain expects a single string value, got a map\nerr\\| [^\n]*publisher-wrong-type.yaml:8: resolve.order expects a list, got a single value")
# sources.priority (multi-site precedence): an item that is no source id is named with the fix.
cs_check_config_test(check_config_publisher_bad_priority ${P} ${D}/publisher-bad-priority.yaml 2
  "err\\| [^\n]*publisher-bad-priority.yaml: sources.priority\\[1\\] 'site/b' is not a source id: write the collector's source.id \\(no '/'\\)")
cs_check_config_test(check_config_publisher_bad_not_found ${P} ${D}/publisher-bad-not-found.yaml 2
  "err\\| [^\n]*publisher-bad-not-found.yaml:[0-9]+: retry.not_found.max_delay is shorter than retry.not_found.first_delay")
# batch.max_apply_time must stay below the consumer's poll interval (issue 5): both keys and the fix named.
cs_check_config_test(check_config_publisher_bad_apply_time ${P} ${D}/publisher-bad-apply-time.yaml 2
  "err\\| [^\n]*publisher-bad-apply-time.yaml:[0-9]+: batch.max_apply_time \\(120000 ms\\) must be below kafka.max.poll.interval.ms \\(120000 ms\\)[^\n]*lower batch.max_apply_time or raise kafka.max.poll.interval.ms")
# ... and so must max_apply_time + cancel_grace (a hung request is cancelled only after both).
cs_check_config_test(check_config_publisher_bad_cancel_grace ${P} ${D}/publisher-bad-cancel-grace.yaml 2
  "err\\| [^\n]*publisher-bad-cancel-grace.yaml:[0-9]+: batch.max_apply_time \\(100000 ms\\) \\+ batch.cancel_grace \\(30000 ms\\) must be below kafka.max.poll.interval.ms \\(120000 ms\\)")

# The shipped examples must pass, with their /run/secrets paths pointed at the fake test secrets.
foreach(svc collector publisher)
  add_test(NAME check_config_${svc}_example
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/check_example_config.sh $<TARGET_FILE:certsync-${svc}>
            ${CMAKE_SOURCE_DIR}/deploy/config/${svc}.example.yaml ${D}/secrets)
  set_tests_properties(check_config_${svc}_example PROPERTIES LABELS unit TIMEOUT 60
    PASS_REGULAR_EXPRESSION "^config ok: [^\n]*/${svc}.example.yaml\n$")
endforeach()

# Usage errors and the informational options.
add_test(NAME cli_collector_no_config COMMAND ${CS_EXPECT} 2 $<TARGET_FILE:${C}>)
set_tests_properties(cli_collector_no_config PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "err\\| certsync-collector: --config FILE is required" FAIL_REGULAR_EXPRESSION "UNEXPECTED EXIT CODE")
add_test(NAME cli_publisher_help_config COMMAND ${CS_EXPECT} 0 $<TARGET_FILE:${P}> --help-config)
set_tests_properties(cli_publisher_help_config PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "out\\| o365.private_key_file  \\(secret file, no default, value: path to <file>\\)"
  FAIL_REGULAR_EXPRESSION "UNEXPECTED EXIT CODE")
add_test(NAME cli_collector_version COMMAND ${CS_EXPECT} 0 $<TARGET_FILE:${C}> --version)
set_tests_properties(cli_collector_version PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "out\\| certsync-collector ${PROJECT_VERSION}\n" FAIL_REGULAR_EXPRESSION "UNEXPECTED EXIT CODE")

# Certificate policy keys (issue 6): both services load the CA and CRL files at startup, so a bad one is an
# error naming the key; ranges and cross-field rules are reported with file:line.
cs_check_config_test(check_config_publisher_policy ${P} ${D}/publisher-policy.yaml 0
  "out\\| config ok: [^\n]*/publisher-policy.yaml\n")
cs_check_config_test(check_config_publisher_policy_bad_ca ${P} ${D}/publisher-policy-bad-ca.yaml 2
  "err\\| [^\n]*publisher-policy-bad-ca.yaml: policy.trusted_ca_file [^\n]*/secrets/o365-client-secret: no certificate could be loaded")
cs_check_config_test(check_config_collector_policy_bad_crl ${C} ${D}/collector-policy-bad-crl.yaml 2
  "err\\| [^\n]*collector-policy-bad-crl.yaml: policy.crl_files [^\n]*/policy/trusted-ca.pem: no CRL could be loaded")
cs_check_config_test(check_config_collector_policy_ranges ${C} ${D}/collector-policy-ranges.yaml 2
  "err\\| [^\n]*collector-policy-ranges.yaml:25: policy.min_rsa_bits = 512 is out of range: allowed 1024..16384\nerr\\| [^\n]*:26: policy.min_ec_bits = 600 is out of range: allowed 160..521\nerr\\| [^\n]*:27: policy.key_usage_purpose = \"encrypt\" is not allowed: expected one of any, encryption, signing\nerr\\| [^\n]*:28: policy.crl_files is set but policy.trusted_ca_file is not[^\n]*\nerr\\| [^\n]*:29: readiness.expiring_soon_days = 0 is out of range: allowed 1..365")
set_tests_properties(check_config_publisher_policy check_config_publisher_policy_bad_ca
  check_config_collector_policy_bad_crl check_config_collector_policy_ranges PROPERTIES LABELS "unit;security")
