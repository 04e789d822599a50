// Every public header of the core, on its own, under -Wall -Wextra -Werror.
#include "batchq/batch_queue.hpp"
#include "batchq/clock.hpp"
#include "batchq/types.hpp"
#include "batchq/sender.hpp"
#include "batchq/http_sender.hpp"
#include "batchq/payload.hpp"
#include "batchq/http_log.hpp"
#include "batchq/spool.hpp"
#include "batchq/version.hpp"
#include "batchq/version.h"
#include "batchq/detail/backoff.hpp"
#include "batchq/detail/entry_size.hpp"
#include "batchq/detail/fork.hpp"
#include "batchq/detail/intake.hpp"

int batchq_header_check_dummy() { return BATCHQ_VERSION_NUMBER; }
