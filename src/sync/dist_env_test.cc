// The torchrun environment contract: a single process without it, ranks with it, and one-line
// errors for values that cannot be meant.
#include "sync/dist_env.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "gradacc/errors.h"

namespace gradacc {
namespace {

// Sets the variables for one test and clears them after.
class Env : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                          "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"})
      ::unsetenv(v);
  }
  static void set(const char* name, const char* value) { ::setenv(name, value, 1); }
};

TEST_F(Env, WithoutWorldSizeItIsOneProcess) {
  const DistEnv e = DistEnv::from_environment();
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.rank, 0);
  EXPECT_FALSE(e.distributed());
}

TEST_F(Env, ReadsTheTorchrunVariables) {
  set("WORLD_SIZE", "4");
  set("RANK", "2");
  set("LOCAL_RANK", "0");
  set("MASTER_ADDR", "10.0.0.7");
  set("MASTER_PORT", "29600");
  const DistEnv e = DistEnv::from_environment();
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.rank, 2);
  EXPECT_EQ(e.local_rank, 0);
  EXPECT_EQ(e.master_addr, "10.0.0.7");
  EXPECT_EQ(e.master_port, 29600);
  EXPECT_TRUE(e.distributed());
}

// torchrun (and gradacc launch) host the store themselves: then rank 0 must not start another.
TEST_F(Env, ReadsWhetherTheLauncherHostsTheStore) {
  set("WORLD_SIZE", "2");
  set("RANK", "0");
  EXPECT_FALSE(DistEnv::from_environment().launcher_hosts_store);
  set("TORCHELASTIC_USE_AGENT_STORE", "True");
  set("TORCHELASTIC_RESTART_COUNT", "3");
  const DistEnv e = DistEnv::from_environment();
  EXPECT_TRUE(e.launcher_hosts_store);
  EXPECT_EQ(e.attempt, 3);
  set("TORCHELASTIC_USE_AGENT_STORE", "False");
  EXPECT_FALSE(DistEnv::from_environment().launcher_hosts_store);
  set("TORCHELASTIC_USE_AGENT_STORE", "yes");  // torch would read it as False and rank 0 would collide
  EXPECT_THROW(DistEnv::from_environment(), ConfigError);
  set("TORCHELASTIC_USE_AGENT_STORE", "True");
  set("TORCHELASTIC_RESTART_COUNT", "-1");
  EXPECT_THROW(DistEnv::from_environment(), ConfigError);
}

TEST_F(Env, RefusesWhatCannotBeMeant) {
  set("WORLD_SIZE", "2");
  EXPECT_THROW(DistEnv::from_environment(), ConfigError);  // no RANK
  set("RANK", "2");
  EXPECT_THROW(DistEnv::from_environment(), ConfigError);  // RANK ≥ WORLD_SIZE
  set("RANK", "01");
  EXPECT_THROW(DistEnv::from_environment(), ConfigError);  // a leading zero
  set("RANK", "1");
  set("MASTER_PORT", "70000");
  EXPECT_THROW(DistEnv::from_environment(), ConfigError);
  set("MASTER_PORT", "29500");
  set("WORLD_SIZE", "two");
  EXPECT_THROW(DistEnv::from_environment(), ConfigError);
}

}  // namespace
}  // namespace gradacc
