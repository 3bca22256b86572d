// equilab bench — whole training steps, as ../shared/bench/torch_reference.py's train_step: batch 64 of random
// images and labels; one call = zero_grad, forward, fused cross-entropy, backward, SGD (lr 0.01, momentum 0.9).
#include <memory>

#include "apps/bench/bench.h"
#include "engine/optim.h"
#include "layers/lenet.h"
#include "layers/small_cnn.h"
#include "losses/cross_entropy.h"

namespace eq::bench {
namespace {

Workload train_step_workload(const std::string& name, std::shared_ptr<Module> model, Shape image_shape) {
  struct State {
    std::shared_ptr<Module> model;
    std::unique_ptr<SGD> opt;
    Tensor x;
    std::vector<int> y;
  };
  auto s = std::make_shared<State>();
  Rng rng(1);
  s->model = std::move(model);
  s->opt = std::make_unique<SGD>(s->model->parameters(), 0.01f, 0.9f);
  Shape batch_shape{64};
  batch_shape.insert(batch_shape.end(), image_shape.begin(), image_shape.end());
  s->x = Tensor::randn(batch_shape, rng);
  for (int i = 0; i < 64; ++i) s->y.push_back(static_cast<int>(rng.randint(10)));
  return {name,
          [s] {
            s->opt->zero_grad();
            cross_entropy(s->model->forward(s->x), s->y).backward();
            s->opt->step();
          },
          0, 20};
}

const Registrar registrar("train_step", [] {
  Rng rng(0);
  return std::vector<Workload>{
      train_step_workload("train_step_lenet", make_lenet(1, 28, 10, rng), {1, 28, 28}),
      train_step_workload("train_step_smallcnn", make_small_cnn(3, 10, rng), {3, 32, 32})};
});

}  // namespace
}  // namespace eq::bench
