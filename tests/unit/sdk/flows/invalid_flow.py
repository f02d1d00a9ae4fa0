from polyflow import FlowSpec, step


class InvalidFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a)

    @step
    def a(self):
        self.x = 1

    @step
    def b(self):
        target = self.end
        self.next(target)

    @step
    def c(self):
        self.next(self.end, foreach=name_of_var)  # noqa: F821

    @step
    def d(self):
        self.next(self.end, num_parallel=4)

    @step
    def e(self):
        self.next({"k": self.end})

    @step
    def f(self):
        self.next({"k": self.end}, condition="v", foreach="w")

    @step
    def g(self):
        if self.x:
            self.next(self.end)
        else:
            self.next(self.end)

    @step
    def h(self):
        self.next(self.a, self.b, foreach="items")

    @step
    def i(self):
        self.next({some_key: self.end, "x": self.end}, condition="v")  # noqa: F821

    @step
    def j(self):
        self.next()

    @step
    def end(self):
        pass
