/* certsync-publisher: Kafka to Office 365. Placeholder until the collector lands. */
#include <stdio.h>

#include "cs_log.h"

int main(void)
{
    cs_log_error("main", "the publisher is not built yet (see issue \"Publisher\")");
    return 2;
}
