// Validates Strimzi KafkaTopic resources in rendered manifests against Strimzi's own API classes
// (io.strimzi:api): each document of kind KafkaTopic is bound to io.strimzi.api.kafka.model.topic.KafkaTopic
// and any property the classes do not know (Strimzi keeps them in "additionalProperties") is an error, as
// are values outside the CRD's ranges and topic config keys Kafka's TopicConfig does not define.
// With --certsync-policy it also checks the durability the design asks for (docs/architecture.md).
//
//   java -cp 'LIB/*' ValidateKafkaTopic.java [--certsync-policy] [--expect-topics N] MANIFEST.yaml...
//
// Exit 0 when valid, 1 with one line per problem, 2 on bad usage.
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MappingIterator;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.fabric8.kubernetes.api.model.ObjectMeta;
import io.strimzi.api.kafka.model.topic.KafkaTopic;
import io.strimzi.api.kafka.model.topic.KafkaTopicSpec;
import java.io.File;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.common.config.TopicConfig;

public class ValidateKafkaTopic {
    static final List<String> problems = new ArrayList<>();

    static void fail(String where, String msg) {
        problems.add(where + ": " + msg);
    }

    /* Every topic-level config name Kafka defines: the *_CONFIG constants of TopicConfig. */
    static Set<String> topicConfigNames() throws IllegalAccessException {
        Set<String> names = new HashSet<>();
        for (Field f : TopicConfig.class.getFields()) {
            if (Modifier.isStatic(f.getModifiers()) && f.getType() == String.class && f.getName().endsWith("_CONFIG")) {
                names.add((String) f.get(null));
            }
        }
        return names;
    }

    public static void main(String[] args) throws Exception {
        boolean policy = false;
        int expect = -1;
        List<String> files = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--certsync-policy")) policy = true;
            else if (args[i].equals("--expect-topics") && i + 1 < args.length) expect = Integer.parseInt(args[++i]);
            else files.add(args[i]);
        }
        if (files.isEmpty()) {
            System.err.println("usage: ValidateKafkaTopic [--certsync-policy] [--expect-topics N] MANIFEST.yaml...");
            System.exit(2);
        }
        Set<String> configNames = topicConfigNames();
        ObjectMapper mapper = new ObjectMapper(new YAMLFactory());
        mapper.configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, true);
        mapper.configure(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES, true);
        int topics = 0;
        for (String file : files) {
            int n = 0;
            try (MappingIterator<JsonNode> it = mapper.readerFor(JsonNode.class).readValues(new File(file))) {
                while (it.hasNext()) {
                    JsonNode doc = it.next();
                    n++;
                    if (doc == null || doc.isNull() || doc.isMissingNode() || !"KafkaTopic".equals(doc.path("kind").asText())) continue;
                    String where = file + ": document " + n + " (KafkaTopic " + doc.path("metadata").path("name").asText() + ")";
                    topics++;
                    if (!"kafka.strimzi.io/v1beta2".equals(doc.path("apiVersion").asText())) {
                        fail(where, "apiVersion " + doc.path("apiVersion").asText() + " is not kafka.strimzi.io/v1beta2");
                    }
                    KafkaTopic kt;
                    try {
                        kt = mapper.treeToValue(doc, KafkaTopic.class);
                    } catch (Exception e) {
                        fail(where, "does not bind to Strimzi's KafkaTopic: " + e.getMessage().split("\n")[0]);
                        continue;
                    }
                    check(where, kt, configNames, policy);
                }
            }
        }
        if (expect >= 0 && topics != expect) {
            fail(String.join(" ", files), "found " + topics + " KafkaTopic resources, expected " + expect);
        }
        for (String p : problems) System.out.println("INVALID " + p);
        if (!problems.isEmpty()) {
            System.out.println("strimzi-validate: " + problems.size() + " problem(s)");
            System.exit(1);
        }
        System.out.println("strimzi-validate: ok (" + topics + " KafkaTopic)");
    }

    static void check(String where, KafkaTopic kt, Set<String> configNames, boolean policy) {
        if (kt.getAdditionalProperties() != null && !kt.getAdditionalProperties().isEmpty()) {
            fail(where, "unknown fields " + kt.getAdditionalProperties().keySet());
        }
        ObjectMeta meta = kt.getMetadata();
        if (meta == null || meta.getName() == null || meta.getName().isEmpty()) {
            fail(where, "metadata.name is missing");
        } else {
            if (meta.getAdditionalProperties() != null && !meta.getAdditionalProperties().isEmpty()) {
                fail(where, "unknown metadata fields " + meta.getAdditionalProperties().keySet());
            }
            if (meta.getLabels() == null || !meta.getLabels().containsKey("strimzi.io/cluster")) {
                fail(where, "no strimzi.io/cluster label: the Topic Operator would ignore it");
            }
        }
        KafkaTopicSpec spec = kt.getSpec();
        if (spec == null) {
            fail(where, "spec is missing");
            return;
        }
        if (spec.getAdditionalProperties() != null && !spec.getAdditionalProperties().isEmpty()) {
            fail(where, "unknown spec fields " + spec.getAdditionalProperties().keySet());
        }
        // Ranges from the KafkaTopic CRD (partitions >= 1, 1 <= replicas <= 32767).
        if (spec.getPartitions() == null || spec.getPartitions() < 1) fail(where, "spec.partitions must be at least 1");
        if (spec.getReplicas() == null || spec.getReplicas() < 1 || spec.getReplicas() > 32767) {
            fail(where, "spec.replicas must be 1..32767");
        }
        String name = spec.getTopicName() != null ? spec.getTopicName() : (meta != null ? meta.getName() : "");
        if (!name.matches("[a-zA-Z0-9._-]{1,249}")) fail(where, "topic name '" + name + "' is not a legal Kafka topic name");
        Map<String, Object> config = spec.getConfig() == null ? Map.of() : spec.getConfig();
        for (Map.Entry<String, Object> e : config.entrySet()) {
            if (!configNames.contains(e.getKey())) fail(where, "spec.config." + e.getKey() + " is not a Kafka topic config");
        }
        Object cleanup = config.get(TopicConfig.CLEANUP_POLICY_CONFIG);
        if (cleanup != null && !Set.of("compact", "delete", "compact,delete", "delete,compact").contains(cleanup.toString())) {
            fail(where, "cleanup.policy '" + cleanup + "' is not compact, delete or both");
        }
        Object ts = config.get(TopicConfig.MESSAGE_TIMESTAMP_TYPE_CONFIG);
        if (ts != null && !Set.of("CreateTime", "LogAppendTime").contains(ts.toString())) {
            fail(where, "message.timestamp.type '" + ts + "' is not CreateTime or LogAppendTime");
        }
        Object isr = config.get(TopicConfig.MIN_IN_SYNC_REPLICAS_CONFIG);
        if (isr != null && spec.getReplicas() != null && Integer.parseInt(isr.toString()) > spec.getReplicas()) {
            fail(where, "min.insync.replicas " + isr + " exceeds replicas " + spec.getReplicas());
        }
        if (!policy) return;
        // certsync's durability rules (docs/architecture.md, design "Kafka").
        if (spec.getReplicas() == null || spec.getReplicas() != 3) fail(where, "policy: replicas must be 3");
        if (!"2".equals(String.valueOf(isr))) fail(where, "policy: min.insync.replicas must be 2");
        if (!"false".equals(String.valueOf(config.get(TopicConfig.UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG)))) {
            fail(where, "policy: unclean.leader.election.enable must be false");
        }
        if (cleanup == null) fail(where, "policy: cleanup.policy must be set");
        // The chart names each resource <release>-<role>; the role decides the cleanup policy.
        String res = meta != null && meta.getName() != null ? meta.getName() : "";
        boolean events = res.endsWith("-events");
        boolean compacted = events || res.endsWith("-collector-state") || res.endsWith("-publisher-state") || res.endsWith("-held");
        if (compacted && !"compact".equals(String.valueOf(cleanup))) fail(where, "policy: " + name + " must be compacted");
        if (!compacted && !"delete".equals(String.valueOf(cleanup))) fail(where, "policy: " + name + " must be cleanup.policy delete");
        if (events && !"LogAppendTime".equals(String.valueOf(ts))) {
            fail(where, "policy: the events topic needs message.timestamp.type LogAppendTime (replay by broker time)");
        }
    }
}
