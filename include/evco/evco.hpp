#pragma once
// evco: C++20 coroutines over libevent. Includes every public header.

#include "evco/channel.hpp"
#include "evco/connect.hpp"
#include "evco/dns.hpp"
#include "evco/endpoint.hpp"
#include "evco/error.hpp"
#include "evco/listener.hpp"
#include "evco/log.hpp"
#include "evco/loop.hpp"
#include "evco/op_options.hpp"
#include "evco/parked.hpp"
#include "evco/signal.hpp"
#include "evco/stream.hpp"
#include "evco/task.hpp"
#include "evco/timer.hpp"
#include "evco/tls.hpp"
