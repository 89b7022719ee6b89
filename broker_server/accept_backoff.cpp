#include "broker_server/accept_backoff.h"

#include <cerrno>

namespace acb::broker {

bool AcceptBackoff::is_resource_error(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  const int e = ec.value();
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

}  // namespace acb::broker
