#include "log/tensorboard_writer.h"

#include <chrono>

#include "log/tensorboard_event.pb.h"  // generated from tensorboard_event.proto

namespace gradacc {
namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir, int64_t first_step) : file_(dir) {
  tensorboard::Event version;
  version.set_wall_time(wall_time());
  version.set_file_version("brain.Event:2");
  file_.append(version.SerializeAsString());
  tensorboard::Event start;
  start.set_wall_time(wall_time());
  start.set_step(first_step);
  start.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  file_.append(start.SerializeAsString());
  file_.flush();  // the file is a valid event file from the start
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  tensorboard::Event event;
  event.set_wall_time(wall_time());
  event.set_step(step);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : values) {
    tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(tag);
    if (described_.insert(tag).second) {
      tensorboard::SummaryMetadata* m = v->mutable_metadata();
      m->mutable_plugin_data()->set_plugin_name("scalars");
      m->set_data_class(tensorboard::DATA_CLASS_SCALAR);
    }
    tensorboard::TensorProto* t = v->mutable_tensor();
    t->set_dtype(tensorboard::DT_DOUBLE);
    t->mutable_tensor_shape();  // no dimensions: a scalar
    t->add_double_val(value);
  }
  file_.append(event.SerializeAsString());
}

void TensorBoardWriter::text(int64_t step, const std::string& tag, const std::string& markdown) {
  tensorboard::Event event;
  event.set_wall_time(wall_time());
  event.set_step(step);
  tensorboard::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  tensorboard::SummaryMetadata* m = v->mutable_metadata();
  m->mutable_plugin_data()->set_plugin_name("text");
  m->set_data_class(tensorboard::DATA_CLASS_TENSOR);
  tensorboard::TensorProto* t = v->mutable_tensor();
  t->set_dtype(tensorboard::DT_STRING);
  t->mutable_tensor_shape();
  t->add_string_val(markdown);
  file_.append(event.SerializeAsString());
}

}  // namespace gradacc
