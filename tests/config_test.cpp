#include "vae_ddp/base/config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/app/cli.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/model/model.h"

namespace vae {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  // Applies one flag as the CLI does and validates; returns the error text or "".
  std::string SetFlag(const std::string& name, const std::string& value) {
    return testing::ErrorOf([&] {
      Config c;
      for (const auto& f : config_fields()) {
        if (name == f.name) field_from_string(c, f, value, "--" + name);
      }
      validate(c);
    });
  }
  std::string YamlError(const std::string& yaml) {
    return testing::ErrorOf([&] { load_yaml_string(yaml, "test.yaml", Config{}); });
  }
};

TEST_F(ConfigTest, DefaultsAreTheSeedRecipe) {
  Config c;
  EXPECT_EQ(c.hidden_dims, std::vector<int64_t>{400});
  EXPECT_EQ(c.latent_dim, 20);
  EXPECT_EQ(c.batch_size, 128);
  EXPECT_DOUBLE_EQ(c.lr, 1e-3);
  EXPECT_EQ(c.seed, 1);
  EXPECT_EQ(c.epochs, 10);
  EXPECT_NO_THROW(validate(c));
}

TEST_F(ConfigTest, YamlRoundTripKeepsEveryField) {
  Config c;
  c.hidden_dims = {512, 256};
  c.lr = 3.5e-4;
  c.kl_schedule = KLScheduleKind::kCyclical;
  c.download = true;
  c.out_dir = "runs/with: colon";
  Config back = load_yaml_string(to_yaml(c), "roundtrip", Config{});
  EXPECT_TRUE(back == c) << to_yaml(back);
}

TEST_F(ConfigTest, YamlAcceptsListsAndScalars) {
  Config c = load_yaml_string("hidden_dims: [512, 256]\nlatent_dim: 32\nbeta: 0.5\n", "x.yaml", Config{});
  EXPECT_EQ(c.hidden_dims, (std::vector<int64_t>{512, 256}));
  EXPECT_EQ(c.latent_dim, 32);
  EXPECT_DOUBLE_EQ(c.beta, 0.5);
}

TEST_F(ConfigTest, UnknownYamlKeyIsNamed) {
  EXPECT_EQ(YamlError("epochz: 3\n"), "test.yaml: line 1: unknown key 'epochz'; did you mean 'epochs'?");
  EXPECT_EQ(YamlError("lr: 0.1\nzzzzzz: 3\n"), "test.yaml: line 2: unknown key 'zzzzzz'");  // nothing near it
}

TEST(ClosestNameTest, SuggestsOnlyNearNames) {
  const std::vector<std::string> names = {"lr", "epochs", "latent-dim", "batch-size"};
  EXPECT_EQ(closest_name("epoch", names), "epochs");
  EXPECT_EQ(closest_name("latent-dims", names), "latent-dim");
  EXPECT_EQ(closest_name("batchsize", names), "batch-size");
  EXPECT_EQ(closest_name("x", names), "");  // one letter: every short name is near, none is meant
  EXPECT_EQ(closest_name("optimizer", names), "");
}

TEST_F(ConfigTest, WrongYamlTypeIsNamed) {
  EXPECT_EQ(YamlError("epochs: ten\n"), "test.yaml: key 'epochs': expected an integer, got 'ten'");
  EXPECT_NE(YamlError("- a\n- b\n").find("expected a mapping"), std::string::npos);
  EXPECT_NE(YamlError("epochs: [1\n").find("not valid YAML"), std::string::npos);
}

TEST_F(ConfigTest, MissingConfigFileIsNamed) {
  try {
    load_yaml_file("/nonexistent/x.yaml", Config{});
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.yaml"), std::string::npos);
  }
}

TEST_F(ConfigTest, ValidationNamesFlagAndValue) {
  EXPECT_EQ(SetFlag("epochs", "0"), "--epochs must be positive, got 0");
  EXPECT_EQ(SetFlag("batch-size", "-4"), "--batch-size must be positive, got -4");
  EXPECT_EQ(SetFlag("lr", "0"), "--lr must be positive, got 0");
  EXPECT_EQ(SetFlag("latent-dim", "0"), "--latent-dim must be positive, got 0");
  EXPECT_EQ(SetFlag("hidden-dims", "400,0"), "--hidden-dims: every width must be positive, got 400,0");
  EXPECT_EQ(SetFlag("kl-schedule", "cosine"), "--kl-schedule must be one of constant, linear, cyclical, got 'cosine'");
  EXPECT_EQ(SetFlag("device", "tpu"), "--device must be one of auto, cpu, cuda, got 'tpu'");
  EXPECT_EQ(SetFlag("lr", "fast"), "--lr: expected a number, got 'fast'");
  EXPECT_EQ(SetFlag("epochs", "3.5"), "--epochs: expected an integer, got '3.5'");
  EXPECT_EQ(SetFlag("kl-ramp", "1.5"), "--kl-ramp must be in (0, 1], got 1.5");
  EXPECT_EQ(SetFlag("epochs", "12"), "");
}

TEST_F(ConfigTest, VariantOptionsAreValidated) {
  EXPECT_EQ(SetFlag("activation", "gelu"), "--activation must be one of relu, leaky_relu, tanh, got 'gelu'");
  EXPECT_EQ(SetFlag("dropout", "1"), "--dropout must be in [0, 1), got 1");
  EXPECT_EQ(SetFlag("recon-loss", "l1"), "--recon-loss must be one of bce, mse, got 'l1'");
  EXPECT_EQ(SetFlag("optimizer", "sgd"), "--optimizer must be one of adam, adamw, got 'sgd'");
  EXPECT_EQ(SetFlag("weight-decay", "-0.1"), "--weight-decay must be >= 0, got -0.1");
  EXPECT_EQ(SetFlag("grad-clip", "-1"), "--grad-clip must be >= 0, got -1");
  EXPECT_EQ(SetFlag("dataset", "cifar10"), "--dataset must be one of mnist, fashion-mnist, got 'cifar10'");
  Config c;
  c.dataset = DatasetKind::kFashionMnist;
  c.download = true;
  EXPECT_THROW(validate(c), UsageError);  // --download fetches MNIST only
}

// Found by tests/fuzz/config_fuzz: a YAML complex key ("? ...") used to escape as a
// yaml-cpp exception (exit 1) instead of a one-line usage error.
TEST(ConfigYamlTest, ComplexKeyIsAUsageError) {
  EXPECT_THROW(load_yaml_string("?\n: 1", "odd.yaml", Config{}), UsageError);
  EXPECT_THROW(load_yaml_string("? [a, b]\n: 1", "odd.yaml", Config{}), UsageError);
}

// Found by tests/fuzz/config_fuzz: YAML cannot hold bytes that are not UTF-8, so a config
// with them could not be written back to config.yaml.
TEST(ConfigUtf8Test, InvalidUtf8IsAUsageError) {
  Config c;
  c.out_dir = "runs/caf\xc3";  // a truncated two-byte sequence
  EXPECT_THROW(validate(c), UsageError);
  c.out_dir = "runs/caf\xc3\xa9";  // "café"
  EXPECT_NO_THROW(validate(c));
  EXPECT_EQ(load_yaml_string(to_yaml(c), "round trip", Config{}), c);
}

// Every shipped recipe loads and passes validation, and asks for what its name says.
TEST(ConfigRecipesTest, EveryShippedRecipeIsValid) {
  const std::string dir = std::string(VAE_DDP_DATA_DIR) + "/../../configs";
  int count = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    const Config c = load_yaml_file(e.path().string(), Config{});
    EXPECT_NO_THROW(validate(c));
    ++count;
  }
  EXPECT_GE(count, 7);
  const Config iwae = load_yaml_file(dir + "/iwae-paper.yaml", Config{});
  EXPECT_EQ(describe_architecture(iwae), "784-200-200-50 tanh");
  EXPECT_EQ(name_of(iwae.binarize), "dynamic");
  const Config annealed = load_yaml_file(dir + "/adamw-784-256-20-kl-linear.yaml", Config{});
  EXPECT_EQ(name_of(annealed.optimizer), "adamw");
  EXPECT_EQ(annealed.epochs, 50);
  EXPECT_EQ(load_yaml_file(dir + "/latent-2d-pictures.yaml", Config{}).latent_dim, 2);
}

// The recipes' old names (seed-*.yaml) still load, for one release, as the renamed files.
TEST(ConfigRecipesTest, OldNamesStillLoad) {
  const std::string dir = std::string(VAE_DDP_DATA_DIR) + "/../../configs";
  EXPECT_EQ(recipe_path(dir + "/seed-latent-2.yaml"), dir + "/latent-2d-pictures.yaml");
  EXPECT_EQ(recipe_path(dir + "/seed-004-adamw-256-kl-linear.yaml"), dir + "/adamw-784-256-20-kl-linear.yaml");
  EXPECT_EQ(recipe_path(dir + "/default.yaml"), dir + "/default.yaml");
  EXPECT_EQ(recipe_path(dir + "/no-such.yaml"), dir + "/no-such.yaml");  // load_yaml_file then names it
}

// --cpu-fast-path became --step: the old YAML key still loads, into --step (the flag is
// cli_test's), and a checkpoint's saved config reads it too.
TEST(ConfigOldOptionsTest, CpuFastPathKeyBecomesStep) {
  EXPECT_EQ(load_yaml_string("cpu_fast_path: false\n", "old.yaml", Config{}, /*warn_old_keys=*/false).step,
            StepKind::kAutograd);
  EXPECT_EQ(load_yaml_string("cpu_fast_path: true\n", "old.yaml", Config{}, false).step, StepKind::kAuto);
  EXPECT_EQ(load_yaml_string("cpu_fast_path: false\nstep: graph\n", "old.yaml", Config{}, false).step,
            StepKind::kGraph);
  const std::string e = testing::ErrorOf([] { load_yaml_string("cpu_fast_path: maybe\n", "old.yaml", Config{}); });
  EXPECT_NE(e.find("old.yaml: key 'cpu_fast_path': expected true or false, got 'maybe'"), std::string::npos) << e;
  EXPECT_EQ(to_yaml(Config{}).find("cpu_fast_path"), std::string::npos) << "written under its new name only";
}

TEST_F(ConfigTest, Bf16OnTheCpuNeedsNativeBf16) {
  Config c;
  c.precision = Precision::kBF16;
  const CpuInfo emulated{"Some CPU", "AVX2", /*native_bf16=*/false}, native{"Some CPU", "AMX-BF16", true};
  const std::string e = testing::ErrorOf([&] { validate_for_device(c, /*cuda=*/false, emulated); });
  EXPECT_NE(e.find("--precision bf16: this CPU (Some CPU (AVX2, bf16 emulated)) has no native bf16"), std::string::npos)
      << e;
  EXPECT_NO_THROW(validate_for_device(c, /*cuda=*/false, native));
  EXPECT_NO_THROW(validate_for_device(c, /*cuda=*/true, emulated));  // the GPU's bf16
  c.precision = Precision::kFP32;
  EXPECT_NO_THROW(validate_for_device(c, /*cuda=*/false, emulated));
}

}  // namespace
}  // namespace vae

// docs/options.md's option table is option_table_markdown()'s output, between two markers:
// each option's description is written once, in config_fields.inc. To bring the page up to
// date: VAE_UPDATE_OPTIONS_PAGE=1 build/tests/config_test --gtest_filter='*OptionTable*'
TEST(OptionsPageTest, OptionTableIsMadeFromTheFields) {
  const std::string begin = "<!-- option table: made from config_fields.inc by tests/config_test -->\n";
  const std::string end = "<!-- end of option table -->";
  std::ifstream in(VAE_DDP_OPTIONS_PAGE);
  ASSERT_TRUE(in) << VAE_DDP_OPTIONS_PAGE;
  std::stringstream text;
  text << in.rdbuf();
  std::string page = text.str();
  const size_t from = page.find(begin), to = page.find(end);
  ASSERT_NE(from, std::string::npos) << VAE_DDP_OPTIONS_PAGE << " lacks the marker " << begin;
  ASSERT_NE(to, std::string::npos) << VAE_DDP_OPTIONS_PAGE << " lacks the marker " << end;
  const size_t start = from + begin.size();
  const std::string table = vae::option_table_markdown();
  if (std::getenv("VAE_UPDATE_OPTIONS_PAGE")) {
    std::ofstream(VAE_DDP_OPTIONS_PAGE) << page.replace(start, to - start, table);
    GTEST_SKIP() << "rewrote " << VAE_DDP_OPTIONS_PAGE << "'s option table";
  }
  EXPECT_EQ(page.substr(start, to - start), table)
      << VAE_DDP_OPTIONS_PAGE << "'s option table differs from the options' descriptions: rerun this test with "
      << "VAE_UPDATE_OPTIONS_PAGE=1";
}
