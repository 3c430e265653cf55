/*
 * Run by tests/services/kafka.sh start --secure, as a single-file Java program (java -cp "$LIB/*" File.java):
 * waits until the SASL_SSL listener of the freshly started broker answers an authenticated DescribeCluster
 * as the admin super user, then creates the ACLs that give each certsync service only its topics, group and
 * transactional ids (design.md). One JVM start for the readiness wait and all ACLs (~2 s on the test box),
 * instead of one AclCommand run per principal.
 *
 *   KafkaSecureSetup BOOTSTRAP CA_PEM ADMIN_USER ADMIN_PASSWORD_FILE BROKER_PID TIMEOUT_SECONDS
 *
 * Exit 0 when every ACL was created, 1 otherwise (the reason on stderr). Gives up early if BROKER_PID dies.
 */
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaSecureSetup {
    // Topic, group and transactional-id names: the defaults of collector/col_config.c and
    // publisher/pub_config.c (design.md). A deployment with other names needs matching ACLs.
    static final String EVENTS = "certsync.changes.v1";
    static final String COLLECTOR_STATE = "certsync.collector-state.v1";
    static final String HELD = "certsync.held.v1";
    static final String PUBLISHER_STATE = "certsync.publisher-state.v1";
    static final String RESULTS = "certsync.results.v1";
    static final String DLQ = "certsync.dlq.v1";
    static final String RETRY = "certsync.retry.v1";
    static final String PUBLISHER_GROUP = "certsync-publisher";
    static final String COLLECTOR_TXN_PREFIX = "certsync-collector-";
    static final String PUBLISHER_TXN_PREFIX = "certsync-publisher-";
    // common/cs_state_reader.c gives librdkafka this group.id (a consumer handle needs one even for assign());
    // librdkafka then looks up its coordinator, which needs Describe. No Read: nobody may join or commit.
    static final String STATE_READER_GROUP = "certsync-state-reader-no-commits";

    static void allow(List<AclBinding> out, String user, ResourceType type, String name, PatternType pattern,
                      AclOperation... ops) {
        for (AclOperation op : ops)
            out.add(new AclBinding(new ResourcePattern(type, name, pattern),
                                   new AccessControlEntry("User:" + user, "*", op, AclPermissionType.ALLOW)));
    }

    static List<AclBinding> bindings() {
        List<AclBinding> b = new ArrayList<>();
        // Collector: writes events, its checkpoint and held events in one transaction, and reads all three
        // back on start (index rebuild, checkpoint, held replay). No consumer group: it uses assign().
        for (String t : new String[] {EVENTS, COLLECTOR_STATE, HELD})
            allow(b, "collector", ResourceType.TOPIC, t, PatternType.LITERAL, AclOperation.READ, AclOperation.WRITE,
                  AclOperation.DESCRIBE);
        allow(b, "collector", ResourceType.TRANSACTIONAL_ID, COLLECTOR_TXN_PREFIX, PatternType.PREFIXED,
              AclOperation.WRITE, AclOperation.DESCRIBE);
        // Publisher: reads events (never writes them); reads and writes its state, results, dlq and retry
        // topics; commits offsets in its group inside its transactions.
        allow(b, "publisher", ResourceType.TOPIC, EVENTS, PatternType.LITERAL, AclOperation.READ,
              AclOperation.DESCRIBE);
        for (String t : new String[] {PUBLISHER_STATE, RESULTS, DLQ, RETRY})
            allow(b, "publisher", ResourceType.TOPIC, t, PatternType.LITERAL, AclOperation.READ, AclOperation.WRITE,
                  AclOperation.DESCRIBE);
        allow(b, "publisher", ResourceType.GROUP, PUBLISHER_GROUP, PatternType.LITERAL, AclOperation.READ,
              AclOperation.DESCRIBE);
        allow(b, "publisher", ResourceType.TRANSACTIONAL_ID, PUBLISHER_TXN_PREFIX, PatternType.PREFIXED,
              AclOperation.WRITE, AclOperation.DESCRIBE);
        for (String user : new String[] {"collector", "publisher"})
            allow(b, user, ResourceType.GROUP, STATE_READER_GROUP, PatternType.LITERAL, AclOperation.DESCRIBE);
        return b;
    }

    static boolean alive(long pid) {
        return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: KafkaSecureSetup BOOTSTRAP CA_PEM ADMIN_USER ADMIN_PASSWORD_FILE BROKER_PID "
                               + "TIMEOUT_SECONDS");
            System.exit(2);
        }
        String password = new String(Files.readAllBytes(Paths.get(args[3])), StandardCharsets.UTF_8).trim();
        long pid = Long.parseLong(args[4]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[5]));

        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put("security.protocol", "SASL_SSL");
        p.put("sasl.mechanism", "SCRAM-SHA-512");
        // Passwords are random hex (kafka.sh), so no JAAS quoting is needed.
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                                      + args[2] + "\" password=\"" + password + "\";");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", args[1]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");

        try (Admin admin = Admin.create(p)) {
            // Wait: the broker opens its SASL_SSL listener only once it has the metadata (SCRAM credentials,
            // ACLs); until then connections are refused. Bounded by the deadline and by the broker's life.
            String last = "no attempt";
            boolean up = false;
            while (!up) {
                if (!alive(pid)) {
                    System.err.println("KafkaSecureSetup: broker pid " + pid + " exited while waiting for it");
                    System.exit(1);
                }
                if (System.nanoTime() > deadline) {
                    System.err.println("KafkaSecureSetup: broker at " + args[0] + " not ready in time: " + last);
                    System.exit(1);
                }
                try {
                    admin.describeCluster().nodes().get(5, TimeUnit.SECONDS);
                    up = true;
                } catch (Exception e) {
                    last = String.valueOf(e.getCause() != null ? e.getCause() : e);
                    // An authentication failure will not heal: the credentials are wrong.
                    if (last.contains("AuthenticationException")) {
                        System.err.println("KafkaSecureSetup: admin login failed: " + last);
                        System.exit(1);
                    }
                    Thread.sleep(100);
                }
            }
            List<AclBinding> acls = bindings();
            admin.createAcls(acls).all().get(30, TimeUnit.SECONDS);
            System.out.println("KafkaSecureSetup: created " + acls.size() + " ACLs");
        }
    }
}
