// layers/: parameter naming and counts (PyTorch's), train/eval propagation, errors, gradients through a model.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/reduce.h"
#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/dropout.h"
#include "layers/lenet.h"
#include "layers/linear.h"
#include "layers/pooling.h"
#include "layers/sequential.h"
#include "layers/small_cnn.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;

TEST_CASE("layers: LeNet and SmallCNN have PyTorch's parameter names and counts") {
  Rng rng(0);
  auto lenet = make_lenet(1, 28, 10, rng);
  // conv1 32*1*9+32, conv2 64*32*9+64, fc1 3136*128+128, fc2 128*10+10 (as torch_reference.py's LeNet)
  CHECK(lenet->num_parameters() == 320 + 18496 + 401536 + 1290);
  auto names = lenet->named_parameters();
  REQUIRE(names.size() == 8);
  CHECK(names[0].first == "0.weight");
  CHECK(names[7].first == "9.bias");
  CHECK(lenet->forward(Tensor({2, 1, 28, 28})).shape() == Shape{2, 10});

  auto cnn = make_small_cnn(3, 10, rng);
  // convs (no bias): 3*32*9 + 32*32*9 + 32*64*9 + 64*64*9 + 64*128*9 + 128*128*9; 6 BN of 2C; fc 1290
  const int64_t convs = 9 * (3 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128);
  CHECK(cnn->num_parameters() == convs + 2 * (32 + 32 + 64 + 64 + 128 + 128) + 1290);
  CHECK(cnn->named_buffers().size() == 12);  // running mean and var of 6 BN layers
  CHECK(cnn->forward(Tensor({2, 3, 32, 32})).shape() == Shape{2, 10});
}

TEST_CASE("layers: train/eval reaches every child; dropout and batch norm follow it") {
  Rng rng(1);
  Sequential net({std::make_shared<Linear>(6, 6, rng), std::make_shared<BatchNorm1d>(6),
                  std::make_shared<Dropout>(0.5f, rng)});
  Tensor x = Tensor::randn({16, 6}, rng);
  net.eval();
  CHECK_FALSE(net[2].is_training());
  // In eval mode the net is deterministic (no dropout, running statistics).
  CHECK(eq::testing::max_abs_diff(net(x), net(x)) == 0.0f);
  net.train();
  CHECK(net[1].is_training());
  CHECK(eq::testing::max_abs_diff(net(x), net(x)) > 0.0f);  // dropout masks differ between calls
}

TEST_CASE("layers: gradients flow through a small conv net to every parameter (finite differences)") {
  Rng rng(2);
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Conv2d>(2, 3, 3, rng, same_padding(3)))
      .add(std::make_shared<Tanh>())
      .add(std::make_shared<AvgPool2d>(2))
      .add(std::make_shared<Flatten>())
      .add(std::make_shared<Linear>(3 * 2 * 2, 4, rng));
  Tensor x = Tensor::randn({2, 2, 5, 4}, rng);
  std::vector<Tensor> inputs = net->parameters();
  CHECK_GRADIENTS([&](const std::vector<Tensor>&) { return net->forward(x); }, inputs);
}

TEST_CASE("layers: bad shapes and arguments give errors naming the layer") {
  Rng rng(3);
  Linear fc(10, 4, rng);
  CHECK_THROWS_NAMING(fc(Tensor({2, 9})), "Linear(10, 4)", "[2, 9]");
  BatchNorm bn(8);
  CHECK_THROWS_NAMING(bn(Tensor({2, 7, 3, 3})), "BatchNorm(8)", "[2, 7, 3, 3]");
  Conv2dOptions grouped;
  grouped.groups = 3;
  CHECK_THROWS_NAMING(Conv2d(4, 6, 3, rng, grouped), "Conv2d", "groups 3");
  CHECK_THROWS_NAMING(Dropout(1.0f, rng), "Dropout", "[0, 1)");
  CHECK_THROWS_NAMING(make_lenet(1, 30, 10, rng), "LeNet", "30");
}
