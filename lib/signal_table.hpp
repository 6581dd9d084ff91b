#pragma once
// Private: the loop's signal watches (lib/signal.cpp), made by the first wait_signal on it.

#include <memory>

#include "evco/error.hpp"

namespace evco {
class loop;
}

namespace evco::detail {

struct signal_table;
struct signal_table_free {
  void operator()(signal_table* t) const noexcept;
};
using signal_table_ptr = std::unique_ptr<signal_table, signal_table_free>;

// Makes `lp`'s table, which owns the process's signals until it is freed:
// std::errc::device_or_resource_busy while another loop's table does.
result<signal_table_ptr> make_signal_table(loop& lp);

}  // namespace evco::detail
