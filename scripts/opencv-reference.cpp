// Writes test/data/opencv-reference.json: OpenCV's Canny, resize (INTER_AREA, INTER_CUBIC,
// INTER_NEAREST), Otsu threshold, erode/dilate and hit-or-miss on small pseudo-random 8-bit
// images, the operations AUTOMATIC1111's ControlNet preprocessing calls, for
// test/control-image.test.ts. Build and run (Debian: apt-get install libopencv-imgproc-dev):
//   g++ -O2 -o /tmp/opencv-reference scripts/opencv-reference.cpp -I/usr/include/opencv4 -lopencv_imgproc -lopencv_core && /tmp/opencv-reference > test/data/opencv-reference.json
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

static uint32_t state = 12345;
static uint32_t next() {
  state ^= state << 13;
  state ^= state >> 17;
  state ^= state << 5;
  return state;
}

static std::string b64(const cv::Mat& m) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  cv::Mat c = m.isContinuous() ? m : m.clone();
  const uint8_t* p = c.ptr<uint8_t>();
  size_t n = c.total() * c.elemSize();
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    out += t[v >> 18 & 63];
    out += t[v >> 12 & 63];
    out += i + 1 < n ? t[v >> 6 & 63] : '=';
    out += i + 2 < n ? t[v & 63] : '=';
  }
  return out;
}

// Smooth shapes plus noise: edges of every direction, flat areas, ties.
static cv::Mat picture(int w, int h, int cn, int noise) {
  cv::Mat m(h, w, CV_8UC(cn));
  int cx = next() % w, cy = next() % h, r = 2 + next() % (std::min(w, h) / 2 + 1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < cn; c++) {
        int v = ((x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r ? 180 : 40) + (x + 2 * y) * (c + 1) % 60;
        if (noise) v += int(next() % (2 * noise + 1)) - noise;
        m.ptr<uint8_t>(y)[x * cn + c] = cv::saturate_cast<uint8_t>(v);
      }
  return m;
}

static std::vector<cv::Mat> images;

// Each case names its input by index into "images", written once at the end.
static void emit(const char* op, const cv::Mat& in, const cv::Mat& out, const std::string& args, bool& first) {
  size_t index = images.size();
  for (size_t i = 0; i < images.size(); i++)
    if (images[i].size() == in.size() && images[i].type() == in.type() && cv::norm(images[i], in, cv::NORM_INF) == 0) index = i;
  if (index == images.size()) images.push_back(in.clone());
  printf("%s\n    {\"op\": \"%s\", \"image\": %zu, %s\"outWidth\": %d, \"outHeight\": %d, \"output\": \"%s\"}", first ? "" : ",", op, index, args.c_str(), out.cols, out.rows, b64(out).c_str());
  first = false;
}

int main() {
  bool first = true;
  printf("{\n  \"generator\": \"scripts/opencv-reference.cpp, OpenCV %s\",\n  \"cases\": [", CV_VERSION);
  const int sizes[][2] = {{16, 12}, {24, 18}, {23, 17}, {37, 29}};
  for (auto& s : sizes)
    for (int cn : {1, 3})
      for (int noise : {0, 12}) {
        cv::Mat img = picture(s[0], s[1], cn, noise);
        for (auto th : std::vector<std::pair<int, int>>{{100, 200}, {20, 60}, {150, 40}}) {
          cv::Mat e;
          cv::Canny(img, e, th.first, th.second);
          emit("canny", img, e, "\"low\": " + std::to_string(th.first) + ", \"high\": " + std::to_string(th.second) + ", ", first);
        }
        const int targets[][2] = {{s[0] / 2, s[1] / 2}, {s[0] / 3, s[1] / 3}, {s[0] / 4, s[1] / 4}, {s[0] * 2 / 3, s[1] * 3 / 4}, {s[0] * 3 / 2, s[1] * 2}, {s[0] + 7, s[1] + 5}, {s[0] - 1, s[1] + 3}, {5, s[1] + 2}, {3, 7}};
        if (s[0] > 30 || (noise && cn == 3)) continue;
        for (auto& t : targets) {
          for (auto [name, flag] : std::vector<std::pair<const char*, int>>{{"area", cv::INTER_AREA}, {"cubic", cv::INTER_CUBIC}, {"nearest", cv::INTER_NEAREST}}) {
            cv::Mat r;
            cv::resize(img, r, cv::Size(t[0], t[1]), 0, 0, flag);
            emit("resize", img, r, std::string("\"interpolation\": \"") + name + "\", ", first);
          }
        }
        if (cn == 1) {
          cv::Mat o;
          cv::threshold(img, o, 0, 255, cv::THRESH_BINARY + cv::THRESH_OTSU);
          emit("otsu", img, o, "", first);
          cv::Mat bin;
          cv::threshold(img, bin, 100, 255, cv::THRESH_BINARY);
          cv::Mat er, di;
          cv::erode(bin, er, cv::Mat::ones(3, 3, CV_8U));
          emit("erode", bin, er, "", first);
          cv::dilate(img, di, cv::Mat::ones(3, 3, CV_8U));
          emit("dilate", img, di, "", first);
          cv::Mat hm;
          cv::Mat k = (cv::Mat_<int>(3, 3) << -1, -1, -1, 0, 1, 0, 1, 1, 1);
          cv::morphologyEx(bin, hm, cv::MORPH_HITMISS, k);
          emit("hitmiss", bin, hm, "\"kernel\": [-1, -1, -1, 0, 1, 0, 1, 1, 1], ", first);
          cv::Mat dl;
          cv::Mat f = (cv::Mat_<uint8_t>(3, 3) << 1, 0, 0, 0, 1, 0, 0, 0, 1);
          cv::dilate(img, dl, f);
          emit("dilate-kernel", img, dl, "\"kernel\": [1, 0, 0, 0, 1, 0, 0, 0, 1], ", first);
        }
      }
  printf("\n  ],\n  \"images\": [");
  for (size_t i = 0; i < images.size(); i++)
    printf("%s\n    {\"width\": %d, \"height\": %d, \"channels\": %d, \"data\": \"%s\"}", i ? "," : "", images[i].cols, images[i].rows, images[i].channels(), b64(images[i]).c_str());
  printf("\n  ]\n}\n");
  return 0;
}
