#pragma once
// Private: the registry of parked ops behind loop::parked(), and what the ops' describe
// functions share.

#include <cstdio>
#include <vector>

#include "evco/detail/parked_op.hpp"
#include "evco/detail/waiter.hpp"
#include "evco/parked.hpp"

namespace evco::detail {

// Everything on the list around `head`, oldest first.
std::vector<parked_op_info> describe_parked(const parked_op& head);
void print_parked(const std::vector<parked_op_info>& ops, std::FILE* out);

// For the describe functions: the endpoints of socket `fd` that it has (none for -1), and the
// time left until `t` fires, if it is armed.
void describe_socket(int fd, parked_op_info& out);
void describe_timer(const timer_node& t, parked_op_info& out);

// What a g++ or clang source_location calls the function of a coroutine, made readable.
std::string function_name(std::string_view raw);

}  // namespace evco::detail
