/* certsync-collector: directory changes to Kafka. Placeholder until the collector lands. */
#include <stdio.h>

#include "cs_log.h"

int main(void)
{
    cs_log_error("main", "the collector is not built yet (see issue \"Collector\")");
    return 2;
}
